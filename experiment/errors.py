"""The batch engine's error: bad input or an unusable run store.

Every module of the engine raises :class:`BatchError` for a problem the user can fix; the
``decouple batch`` command prints each problem on its own line and exits 2, without a
traceback. Only the standard library is used here.
"""

from __future__ import annotations


class BatchError(Exception):
    """Bad input or a store that cannot be used: reported without a traceback, exit 2.

    Attributes:
        problems: one human-readable message per problem.
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
