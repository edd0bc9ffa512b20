"""The converter install's TensorFlow and Keras: whether they are there (the runtime install
has neither), and keeping their start-up and export chatter out of the user's terminal."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys

from edgemobile.errors import MissingInstallError, first_line
from edgemobile.native_stderr import drop_all, native_stderr_filtered


def quiet_tensorflow() -> None:
    """Import TensorFlow (if installed) with its C++ start-up chatter silenced: absl logs CUDA
    and oneDNN notices to stderr before any setting can stop them, and they hide the output
    users came for. Later imports are free; errors after start-up still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    with native_stderr_filtered(drop_all), contextlib.suppress(ImportError):  # require_converter says why
        import tensorflow  # noqa: F401


def require_converter(subject, action: str = "building and converting a Keras model") -> None:
    """Stop converter-only work in the runtime install (no TensorFlow/Keras) with one line
    naming the converter install — called before any model is built or file downloaded."""
    quiet_tensorflow()
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise MissingInstallError(str(subject), action, first_line(exc)) from None


@contextlib.contextmanager
def quiet_keras():
    """Keras' exporter prints every traced tensor to stdout during conversion."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
