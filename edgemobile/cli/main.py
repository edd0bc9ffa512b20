"""``edgemobile`` command line: one argparse subcommand per module (``cli/cmd_<command>.py``:
its parser, one API call, printing).

Every user-facing failure is an :class:`EdgeMobileError`, printed as one line
(``edgemobile: error: …``) with exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import warnings

from edgemobile.cli.arguments import preprocessing_flags
from edgemobile.errors import EdgeMobileError, EdgeMobileWarning
from edgemobile.version import __version__

# One line per command, in the order ``edgemobile --help`` lists them; each module has
# register(subparsers, preprocessing_flags) adding its parser with ``func`` set.
COMMAND_MODULES: tuple[str, ...] = (
    "edgemobile.cli.cmd_convert",
    "edgemobile.cli.cmd_eval",
    "edgemobile.cli.cmd_predict",
    "edgemobile.cli.cmd_models",
    "edgemobile.cli.cmd_bundle",
    "edgemobile.cli.cmd_bench",
    "edgemobile.cli.cmd_inspect",
    "edgemobile.cli.cmd_report",
    "edgemobile.cli.cmd_info",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemobile",
        description="Mobile image classifiers from Keras + ImageNet weights to honest full-integer TFLite models.",
    )
    parser.add_argument("--version", action="version", version=f"edgemobile {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = preprocessing_flags()
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub, prep)
    return parser


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EdgeMobileWarning)  # the commands print their own warning lines
            return args.func(args)
    except EdgeMobileError as exc:
        print(f"edgemobile: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nedgemobile: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except _Terminated:
        print("\nedgemobile: terminated (SIGTERM)", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
