"""Train the draft model for speculative decoding: `mmgen train draft`.

A small transformer (preset "tiny"-to-"draft" size) distilled from the shipped one on world
conversations: its loss is the cross-entropy against the transformer's own next-token
distribution (so it learns what the big model would say, not just the data), on the same
positions the transformer is trained on. Same flags as `mmgen train lm`, plus --teacher.

    mmgen train draft                       # teacher checkpoints/lm → checkpoints/draft
    mmgen train draft --resume
"""
from __future__ import annotations

import argparse

from . import lm


def add_arguments(p: argparse.ArgumentParser) -> None:
    lm.add_arguments(p)
    p.set_defaults(preset="draft", out="checkpoints/draft", steps=20_000, lr=2e-3,
                   text_weight=1.0)     # the draft only ever proposes image codes
    p.add_argument("--teacher", default=lm.DEFAULT_OUT, help="the transformer to distil")


def run(args) -> int:
    # the draft speaks the teacher's stream: same text tokenizer, same codebook
    if args.tokenizer is None and not args.resume:
        args.tokenizer = args.teacher
    return lm.run(args, teacher_path=args.teacher)
