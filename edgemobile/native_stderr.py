"""Silence the notices C++ libraries write straight to file descriptor 2.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` for every
interpreter, the converter's quantizer prints ``fully_quantize: 0, inference_type: …`` and
TensorFlow's import logs CUDA/oneDNN notices — none reachable through Python's ``sys.stderr``
or a logging setting. :func:`native_stderr_filtered` points fd 2 at a temporary file while
the native call runs and then writes back every line except the known notices, so real
errors still show (in order, just after the call). TF-free: the runtime uses it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Callable, Iterator

# Exact notices only: anything else a native library prints is passed through.
LITERT_DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
QUANTIZER_NOTICE = b"fully_quantize: "

_lock = threading.RLock()  # fd 2 is process-wide: one redirection at a time


def drop_notices(line: bytes) -> bool:
    """True for the known native notices (see module docstring)."""
    return line.startswith(LITERT_DELEGATE_NOTICE) or line.startswith(QUANTIZER_NOTICE)


def drop_all(line: bytes) -> bool:
    return True


@contextlib.contextmanager
def native_stderr_filtered(drop: Callable[[bytes], bool] = drop_notices) -> Iterator[None]:
    """Run the body with fd 2 captured; afterwards re-emit the lines ``drop`` keeps."""
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded / closed stderr)
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True) if not drop(line.rstrip())]
                data = b"".join(kept)
                while data:
                    data = data[os.write(2, data):]
