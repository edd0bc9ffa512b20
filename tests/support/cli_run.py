"""Run the CLI in-process as a test would type it: arguments as strings, output captured."""

from __future__ import annotations

from edgemobile.cli.main import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``edgemobile ARGV…``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_ok(capsys, *argv) -> str:
    """stdout of ``edgemobile ARGV…``, which must succeed (else its stderr is the failure)."""
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out
