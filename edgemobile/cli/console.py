"""What every command prints besides its result: the notes and warnings lines on stderr, and
the ``--json FILE`` copy of the result (checked before the work, written atomically after)."""

from __future__ import annotations

import argparse
import json
import sys

from edgemobile.outputs import check_output, write_atomic


def add_json_flags(p: argparse.ArgumentParser, what: str = "the results") -> None:
    p.add_argument("--json", help=f"also write {what} to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def check_json(args: argparse.Namespace) -> None:
    """Fail before any work if ``--json`` cannot be written."""
    if args.json:
        check_output(args.json, args.force)


def write_json(args: argparse.Namespace, data: dict) -> None:
    if args.json:
        write_atomic(args.json, json.dumps(data, indent=2) + "\n", force=args.force)


def print_notes(notes=(), warnings=()) -> None:
    """A result's notes and warnings, one ``edgemobile: …`` line each on stderr."""
    for note in notes:
        print(f"edgemobile: {note}", file=sys.stderr)
    for warning in warnings:
        print(f"edgemobile: warning: {warning}", file=sys.stderr)
