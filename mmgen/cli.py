"""The `mmgen` command line: one subcommand per stage.

    mmgen world export --n 200 --out samples/
    mmgen data encode --world 20000 --out shards/world
    mmgen train vq
Each subcommand lives in the module that owns the work; this file only finds the command and
dispatches. Only the chosen command's module is imported, so `mmgen --help` stays instant and
`mmgen world export` never loads torch.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys

# (command words, "module" or "module:object", help). The module (or the object in it) has
# `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("chat",), "mmgen.terminal", "chat in the terminal: draw, edit, ask, undo, save"),
    (("generate",), "mmgen.oneshot:generate", "draw pictures for a prompt into files"),
    (("edit",), "mmgen.oneshot:edit", "change a picture as an instruction says"),
    (("ask",), "mmgen.oneshot:ask", "answer a question about a picture"),
    (("serve",), "mmgen.server", "an OpenAI-compatible HTTP API and a chat page"),
    (("world", "export"), "mmgen.world.export", "write sample conversations as JSONL + PNG files"),
    (("data", "encode"), "mmgen.shards", "VQ-encode conversations once into a shard that training reads"),
    (("train", "vq"), "mmgen.train.vq", "train the image tokenizer"),
    (("train", "glyphs"), "mmgen.train.glyph_codes", "give the world's lettering exact tokenizer codes"),
    (("train", "previews"), "mmgen.train.preview_table", "the per-code patch table that cheap previews paste"),
    (("train", "refiner"), "mmgen.train.refiner", "train the diffusion refiner that cleans decoded pictures"),
    (("train", "lm"), "mmgen.train.lm", "train the transformer on conversations"),
    (("train", "grow"), "mmgen.train.grow", "deepen a trained transformer without changing what it says"),
    (("train", "draft"), "mmgen.train.draft", "distil the draft model for speculative decoding"),
    (("eval",), "mmgen.eval.benchmark", "the judged benchmark: generation, editing, questions, variations"),
]


def usage(prefix: tuple[str, ...] = ()) -> str:
    lines = [f"usage: mmgen {' '.join(prefix) + ' ' if prefix else ''}COMMAND [options]", "", "commands:"]
    for path, _, help_text in COMMANDS:
        if path[:len(prefix)] == prefix:
            lines.append(f"  {' '.join(path):<18} {help_text}")
    lines.append("\n`mmgen COMMAND --help` for a command's options.")
    return "\n".join(lines)


def find_command(argv: list[str]) -> tuple[tuple[str, ...], str, str] | None:
    for path, module, help_text in COMMANDS:
        if tuple(argv[:len(path)]) == path:
            return path, module, help_text
    return None


def next_words(prefix: tuple[str, ...]) -> list[str]:
    """The words that may follow `prefix` in a command ('vq', 'lm', … after 'train')."""
    return sorted({path[len(prefix)] for path, _, _ in COMMANDS
                   if path[:len(prefix)] == prefix and len(path) > len(prefix)})


def not_a_command(argv: list[str], prefix: tuple[str, ...]) -> str:
    """What is wrong with `argv`, which names no command; `prefix`: the command words it got right."""
    words = [a for a in argv if not a.startswith("-")]
    if len(words) > len(prefix):
        unknown = f"mmgen: unknown command {' '.join(words[:len(prefix) + 1])!r}"
        close = difflib.get_close_matches(words[len(prefix)], next_words(prefix), n=1)
        return f"{unknown}; did you mean {' '.join(prefix + tuple(close))!r}?" if close else unknown
    if prefix:
        return f"mmgen {' '.join(prefix)}: name one of its commands (below)"
    return f"mmgen: {argv[0]!r} is not a command; options come after the command"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    found = find_command(argv)
    if found is None:
        prefix = tuple(a for a in argv if not a.startswith("-"))
        while prefix and not any(p[:len(prefix)] == prefix for p, _, _ in COMMANDS):
            prefix = prefix[:-1]
        if not argv:                    # no command: what the commands are, as a mistake (exit code 2)
            print(usage(), file=sys.stderr)
            return 2
        if "-h" in argv or "--help" in argv:
            print(usage(prefix))
            return 0
        print(not_a_command(argv, prefix) + "\n\n" + usage(prefix), file=sys.stderr)
        return 2
    path, target, help_text = found
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        module = getattr(module, attr)
    parser = argparse.ArgumentParser(prog="mmgen " + " ".join(path), description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[len(path):])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
