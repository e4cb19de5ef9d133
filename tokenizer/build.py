"""Build the text tokenizer in this folder: `python tokenizer/build.py`.

Corpus: the words of world conversations from the training split (prompts, edits, questions,
answers, replies — never the held-out phrasings of the evaluation split) plus ordinary English
prose from the docstrings of Python's standard library, so text a user types outside the
world's templates still encodes in few tokens. Byte-level BPE means nothing is ever unknown.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmgen.text import DEFAULT_VOCAB_SIZE, TOKENIZER_DIR, TextTokenizer, train_tokenizer  # noqa: E402


STDLIB_MODULES = ("argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "fractions",
                  "functools", "http", "inspect", "itertools", "json", "logging", "os", "pathlib",
                  "random", "statistics", "string", "textwrap", "threading", "turtle", "typing", "unittest",
                  "urllib", "zipfile", "calendar", "difflib", "heapq", "shutil", "tarfile", "tkinter")


def english_docstrings() -> list[str]:
    """Docstrings of standard-library modules, functions and classes: plain English prose."""
    texts = []
    warnings.simplefilter("ignore")
    for name in STDLIB_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        mods = [mod]
        if hasattr(mod, "__path__"):
            for info in pkgutil.iter_modules(mod.__path__, name + "."):
                if info.name.endswith("__main__"):     # importing it would run the program
                    continue
                try:
                    mods.append(importlib.import_module(info.name))
                except Exception:
                    pass
        for m in mods:
            if m.__doc__:
                texts.append(m.__doc__)
            for obj in vars(m).values():
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and getattr(obj, "__module__", None) == m.__name__:
                    texts.append(doc)
    return texts


def world_texts(n_conversations: int) -> list[str]:
    from mmgen.world.conversation import sample_conversation
    texts = []
    for seed in range(n_conversations):
        for turn in sample_conversation(seed, split="train").turns:
            if turn.text:
                texts.append(turn.text)
    return texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    ap.add_argument("--conversations", type=int, default=20000)
    ap.add_argument("--out", default=str(TOKENIZER_DIR))
    args = ap.parse_args()
    world = world_texts(args.conversations)
    english = english_docstrings()
    print(f"corpus: {len(world)} world texts, {len(english)} docstrings")
    tok = TextTokenizer(train_tokenizer(world + english, vocab_size=args.vocab_size))
    tok.save_pretrained(args.out)
    sample = world[:2000]
    n_tokens = sum(len(tok.encode(t)) for t in sample)
    print(f"wrote {args.out}/tokenizer.json: {tok.vocab_size} entries; "
          f"{n_tokens / len(sample):.1f} tokens per world text on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
