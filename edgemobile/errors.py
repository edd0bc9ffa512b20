"""The one exception type users see, and the one warning type.

Anything raised as :class:`EdgeMobileError` is printed by the CLI as a single line
(``edgemobile: error: <message>``) with exit status 2 — no traceback. Messages name the
file or argument that is wrong and say what is wrong with it.

The API's results carry their warnings (``.warnings``) and also :func:`warn` them as
:class:`EdgeMobileWarning`, so notebook users see them; the CLI prints its own
``edgemobile: warning:`` lines and ignores the Python warnings.
"""

import warnings


class EdgeMobileError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class EdgeMobileWarning(UserWarning):
    """Something the user should know about a result that is still written (one line)."""


def warn(messages) -> None:
    """Emit each of ``messages`` as an :class:`EdgeMobileWarning` from the API call."""
    for message in messages:
        warnings.warn(message, EdgeMobileWarning, stacklevel=3)


CONVERTER_INSTALL = "pip install 'edgemobile[convert]'"


class MissingInstallError(EdgeMobileError):
    """Converter-only work (building, converting or running a Keras model) asked of the runtime
    install, which has no TensorFlow/Keras: ``<subject>: <action> needs the converter install
    (pip install 'edgemobile[convert]')``, with the import error that showed it."""

    def __init__(self, subject: str, action: str, reason: str = ""):
        super().__init__(f"{subject}: {action} needs the converter install ({CONVERTER_INSTALL})"
                         + (f"; here: {reason}" if reason else ""))


class BadImageError(EdgeMobileError):
    """An image (of an evaluation set, or given to predict) that cannot be decoded; the message
    names it. The CLI adds a hint (``--skip-bad-images``)."""


class BadModelFileError(EdgeMobileError):
    """A file given as a model that is not a valid one: a .tflite that is not a TFLite
    flatbuffer (or one the interpreter refuses to load), a .keras/.h5 that Keras cannot load
    as a model. The message names the file and what is wrong with it."""


class DownloadError(EdgeMobileError):
    """A file edgemobile downloads (weights, calibration images) could not be provided: offline,
    unreachable, not matching its checksum, or a cache that cannot be written. The message
    names the file and says how to provide it by hand."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none): what a one-line
    error quotes of a library's multi-line exception."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def last_line(exc: BaseException) -> str:
    """The last line of ``exc``'s message (its type name when it has none): where a wrapped
    remote traceback (Ray's ``RayTaskError``) states the error itself."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
