"""The fd-2 filter drops only the known native notices and keeps everything else, in order
(a child process writes through the raw file descriptor, as C++ code does)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _child(body: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent("""
        import os, sys
        from edgemobile.native_stderr import native_stderr_filtered, drop_all
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_known_notices_dropped_other_lines_kept():
    proc = _child("""
        os.write(2, b"before\\n")
        with native_stderr_filtered():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
            os.write(2, b"ERROR: a real kernel error\\n")
            print("python line", file=sys.stderr)
            os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8\\n")
        os.write(2, b"after\\n")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["before", "ERROR: a real kernel error", "python line", "after"]


def test_exception_inside_restores_stderr_and_keeps_output():
    proc = _child("""
        try:
            with native_stderr_filtered():
                os.write(2, b"partial output\\n")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        os.write(2, b"stderr is back\\n")
        with native_stderr_filtered(drop_all):
            os.write(2, b"dropped\\n")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["partial output", "stderr is back"]
