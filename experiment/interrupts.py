"""Signals that stop a batch (Ctrl-C, ``kill``, a closed terminal) and the pause testing hook.

``decouple batch`` handles SIGINT, SIGTERM (what ``kill``, ``timeout`` and cluster schedulers
send) and SIGHUP alike (:func:`signals_interrupt`): the first one raises :class:`Interrupted`
(a ``KeyboardInterrupt``) in the main thread, so the batch stops the way Ctrl-C stops it:
the runs already written are kept, the worker processes and the forkserver are stopped, a
message is printed and the command exits with 128 + the signal's number (130, 143, 129). A
second signal while it cleans up is noted and ignored, so the clean-up is not cut short.
SIGHUP is left alone when the command was started with it ignored (``nohup``).

Testing hook: ``DECOUPLE_PAUSE=POINT`` with ``DECOUPLE_PAUSE_FILE=PATH`` makes the engine,
on reaching ``POINT``, write its process id to ``PATH`` and wait while ``PATH`` exists: a
test waits for the file, then signals or kills the process at exactly that point (or
deletes the file to let it go on). The points (:data:`PAUSE_POINTS`):

* ``before-manifest``: the store directory and its lock exist, nothing else is written;
* ``after-manifest``: the manifest is written, the shards directory not yet;
* ``shard:N``: the N-th shard of this invocation has just been written;
* ``before-finish``: every task is done, the final manifest not yet written;
* ``run:SCENARIO:SEED:SAMPLE``: a worker is about to start that run (the file then holds
  the worker's process id: kill it to test a dying worker).

Only the standard library is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

#: Environment variables of the pause testing hook (see the module docstring).
PAUSE_ENV = "DECOUPLE_PAUSE"
PAUSE_FILE_ENV = "DECOUPLE_PAUSE_FILE"

#: The named points of the pause hook (``shard:N`` and ``run:...`` take arguments).
PAUSE_POINTS = ("before-manifest", "after-manifest", "shard:N", "before-finish", "run:S:I:K")

#: The signals a batch treats as "stop now, keep what is done".
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A stop signal reached the batch: finished runs are kept, exit 128 + ``signum``.

    Attributes:
        signum: the signal's number (``signal.SIGTERM`` ...).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, the shell's convention."""
        return 128 + self.signum


_received: list[int] = []


def _raise_once(signum, frame) -> None:
    """Signal handler: raise :class:`Interrupted` for the first signal, note later ones."""
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted(signum)


def received() -> int | None:
    """The first stop signal received inside :func:`signals_interrupt`, if any."""
    return _received[0] if _received else None


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside: SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (once); restored after.

    (Unless :func:`ignore_stop_signals` replaced the handlers meanwhile: those stay.)

    Only in the main thread (elsewhere Python cannot set handlers: nothing is changed).
    SIGINT and SIGTERM are handled even if ignored at start-up (a script's ``&`` ignores
    SIGINT); SIGHUP is not when ignored (``nohup``).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    saved = {}
    for sig in STOP_SIGNALS:
        old = signal.getsignal(sig)
        if sig == getattr(signal, "SIGHUP", None) and old == signal.SIG_IGN:
            continue
        saved[sig] = old
        signal.signal(sig, _raise_once)
    try:
        yield
    finally:
        for sig, old in saved.items():
            if signal.getsignal(sig) is _raise_once:  # not replaced by ignore_stop_signals
                with contextlib.suppress(Exception):
                    signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _note_only(signum, frame) -> None:
    """Signal handler of a command that has finished: note the signal, nothing else."""
    _received.append(signum)


def ignore_stop_signals() -> None:
    """Note (and otherwise ignore) stop signals from now on: for a command that has finished.

    Only in the main thread. SIGHUP, if ignored (``nohup``), stays so. The handlers stay
    when :func:`signals_interrupt` ends.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _note_only)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Inside: SIGINT ignored, so a process started here (the forkserver) inherits SIG_IGN.

    A Ctrl-C then cannot interrupt the forkserver's imports with a traceback. SIGINT is
    also blocked meanwhile, so one that comes is not lost: it is delivered to this
    process's own handler when the block ends.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)
    can_block = hasattr(signal, "pthread_sigmask")
    if can_block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)
        if can_block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# --------------------------------------------------------------------------------------
# The pause testing hook
# --------------------------------------------------------------------------------------


def pause_target() -> tuple[str, str] | None:
    """``(point, file)`` of the pause hook, or ``None`` when it is not set."""
    point, path = os.environ.get(PAUSE_ENV, "").strip(), os.environ.get(PAUSE_FILE_ENV, "")
    if not point or not path:
        return None
    return point, path


def pause_at(point: str, target: tuple[str, str] | None = None) -> None:
    """If the pause hook names ``point``: write this process's id to its file, wait while it exists.

    Args:
        point: the point reached, e.g. ``"shard:2"``.
        target: the hook's ``(point, file)``; default: read from the environment.
    """
    target = target if target is not None else pause_target()
    if target is None or target[0] != point:
        return
    path = Path(target[1])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()), encoding="utf-8")
    os.replace(tmp, path)
    while path.exists():  # the test signals this process, or deletes the file to go on
        time.sleep(0.01)
