"""The `mmgen` command line: one subcommand per stage.

    mmgen world export --n 200 --out samples/
    mmgen train vq
Each subcommand lives in the module that owns the work; this file only parses and dispatches,
importing lazily so `mmgen --help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (command path, module, help). Each module has `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("world", "export"), "mmgen.world.export", "write sample conversations as JSONL + PNG"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmgen", description="conversational image generator")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module, help_text in COMMANDS:
        sub = top
        for i, name in enumerate(path[:-1]):
            if name not in groups:
                group_parser = sub.add_parser(name, help=f"{name} commands")
                groups[name] = group_parser.add_subparsers(dest=f"{name}_command", metavar="WHAT")
                group_parser.set_defaults(_group_parser=group_parser)
            sub = groups[name]
        p = sub.add_parser(path[-1], help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
