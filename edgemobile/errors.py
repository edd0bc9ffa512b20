"""The one exception type users see.

Anything raised as :class:`EdgeMobileError` is printed by the CLI as a single line
(``edgemobile: error: <message>``) with exit status 2 — no traceback. Messages name the
file or argument that is wrong and say what is wrong with it.
"""


class EdgeMobileError(Exception):
    """A problem with the user's input or environment, explained in one line."""
