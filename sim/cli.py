"""The ``groqsim`` command.  Bad input -> one line on stderr naming what is wrong, exit status 2."""
from __future__ import annotations

import argparse
import sys

from .catalog import Catalog, format_rows
from .errors import ConfigError


def _limits(args) -> int:
    cat = Catalog.published()
    sys.stdout.write(format_rows(cat.rows(args.tier, args.model), args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="groqsim", description="Capacity simulator for the Groq API's rate limits.")
    sub = p.add_subparsers(dest="command", required=True)
    lim = sub.add_parser("limits", help="list Groq's published rate limits")
    lim.add_argument("--tier")
    lim.add_argument("--model")
    lim.add_argument("--format", choices=["table", "csv", "json"], default="table")
    lim.set_defaults(func=_limits)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"groqsim: error: {exc}", file=sys.stderr)
        return 2
