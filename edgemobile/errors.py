"""The one exception type users see.

Anything raised as :class:`EdgeMobileError` is printed by the CLI as a single line
(``edgemobile: error: <message>``) with exit status 2 — no traceback. Messages name the
file or argument that is wrong and say what is wrong with it.
"""


class EdgeMobileError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none): what a one-line
    error quotes of a library's multi-line exception."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
