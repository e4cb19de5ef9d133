"""Make the draft model for speculative decoding: `mmgen train draft`.

Two kinds, both distilled from the shipped transformer (--teacher):

- neighbours (the default, shipped): a lookup table of the teacher's likeliest code given the codes
  above, left and above-right, fitted on world pictures with the teacher forced along them, and of
  the likeliest next word of a reply given the last three (neighbours.py says why a table beats a
  small transformer on a CPU). Minutes, no training loop.
- transformer: a small transformer (preset "draft") trained on world conversations against the
  teacher's next-token distribution — the same flags as `mmgen train lm`.

    mmgen train draft                                  # checkpoints/lm → checkpoints/draft (a table)
    mmgen train draft --pictures 8000
    mmgen train draft --kind transformer --steps 20000 --out runs/draft   # a draft transformer instead
"""
from __future__ import annotations

import argparse

from . import lm

KINDS = ("neighbours", "transformer")
WORD_CONVERSATIONS = 20_000     # default: conversations whose replies the word table counts (text only: ~1 min)


def add_arguments(p: argparse.ArgumentParser) -> None:
    lm.add_arguments(p)
    p.set_defaults(preset="draft", out="checkpoints/draft", steps=20_000, lr=2e-3,
                   text_weight=1.0)     # the draft only ever proposes image codes
    p.add_argument("--teacher", default=lm.DEFAULT_OUT, help="the transformer to distil")
    p.add_argument("--kind", choices=KINDS, default="neighbours",
                   help="neighbours: a lookup table (default); transformer: a small transformer")
    p.add_argument("--pictures", type=int, default=4000,
                   help="neighbours: world pictures to fit the table on")
    p.add_argument("--word-conversations", type=int, default=WORD_CONVERSATIONS,
                   help="neighbours: conversations whose replies the word table counts")


def run(args) -> int:
    if args.kind == "neighbours":
        return fit_neighbours(args)
    # the draft speaks the teacher's stream: same text tokenizer, same codebook
    if args.tokenizer is None and not args.resume:
        args.tokenizer = args.teacher
    return lm.run(args, teacher_path=args.teacher)


def fit_neighbours(args) -> int:
    import time
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from ..data import CodeCache, jsonl_conversations, world_conversations
    from ..model import load_model
    from ..neighbours import fit, fit_words
    from ..session import Settings
    from ..stream import Stream
    from ..text import TextTokenizer
    from ..vq import VQTokenizer

    if args.pictures < 1:
        raise SystemExit(f"mmgen train draft: --pictures must be at least 1, not {args.pictures}")
    if args.word_conversations < 1:
        raise SystemExit(f"mmgen train draft: --word-conversations must be at least 1, not {args.word_conversations}")
    if not (Path(args.teacher) / "config.json").is_file():
        raise SystemExit(f"mmgen train draft: no transformer at {args.teacher} (--teacher)")
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_model(args.teacher).eval()
    vq = VQTokenizer.from_pretrained(args.vq).eval()
    stream = Stream(TextTokenizer.from_pretrained(args.teacher), vq.codebook_size)
    if stream.vocab_size != teacher.config.vocab_size:
        raise SystemExit(f"mmgen train draft: {args.teacher} and {args.vq} do not belong together "
                         f"({teacher.config.vocab_size} ids, the stream makes {stream.vocab_size})")
    # seeds of their own: not the conversations the teacher was trained on most recently
    start = 10_000_000 + args.seed
    if args.data:
        conversations = jsonl_conversations(args.data, vq.encode, repeat=False)
        texts = jsonl_conversations(args.data, _blank_pictures, repeat=False)
    else:
        conversations = world_conversations(CodeCache(vq.encode), split="train", start=start)
        texts = world_texts(start)
    config = Settings().sampling()      # the table drafts for what chats draw: their guidance
    t0 = time.time()
    bar = tqdm(total=args.pictures, unit="picture", dynamic_ncols=True)
    table = fit(teacher, stream, conversations, pictures=args.pictures, config=config,
                on_batch=lambda seen: bar.update(seen - bar.n))
    bar.close()
    table.words = fit_words(stream, texts, count=args.word_conversations)
    table.info["teacher_steps"] = (getattr(teacher.config, "mmgen_training", None) or {}).get("steps")
    table.info["word_conversations"] = args.word_conversations
    table.info["seconds"] = round(time.time() - t0, 1)
    table.save(args.out)
    print(f"neighbour table: {len(table)} neighbourhoods from {table.info['pictures']} pictures, "
          f"{sum(map(len, table.words))} word contexts, in {table.info['seconds']:.0f} s → {args.out}")
    return 0


def _blank_pictures(images):
    """Stand-in codes: the word table needs to know where pictures are, not what is in them."""
    import torch
    from ..stream import IMAGE_SIDE
    return torch.zeros((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=torch.long)


def world_texts(start: int):
    """World conversations with stand-in codes for their pictures (nothing rendered or encoded)."""
    from ..stream import IMAGE_TOKENS, Conversation, Turn
    from ..world.conversation import sample_conversation
    seed = start
    while True:
        conv = sample_conversation(seed, split="train")
        yield Conversation(tuple(Turn(t.role, t.text, (0,) * IMAGE_TOKENS if t.image is not None else None)
                                 for t in conv.turns))
        seed += 1
