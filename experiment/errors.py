"""The batch engine's errors: bad input, an unusable run store, a damaged data file.

Every module of the engine raises :class:`BatchError` for a problem the user can fix; the
``decouple batch`` command prints each problem on its own line and exits 2, without a
traceback. :class:`DamagedFile` names a data file whose contents cannot be trusted; it is a
``ValueError``, so :mod:`analysis.load` and ``decouple report`` report it like other bad
input. Only the standard library is used here.
"""

from __future__ import annotations

from pathlib import Path


class BatchError(Exception):
    """Bad input or a store that cannot be used: reported without a traceback, exit 2.

    Attributes:
        problems: one human-readable message per problem.
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DamagedFile(ValueError):
    """A run store's data file that is truncated, garbled or fails its checksum.

    Attributes:
        path: the file.
        reason: what is wrong with it, e.g. ``"the file is empty (0 bytes)"``.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: damaged data file: {reason}")
