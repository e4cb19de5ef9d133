"""Held-out questions answered under teacher forcing, by kind: how well the transformer reads pictures.

    python benchmarks/reading.py [--checkpoints checkpoints] [--n 150] [--told]

Quiz conversations of the eval split (held-out phrasings and scenes, no drills) are run through the
transformer once each, their true answers in place. An answer counts as right when every one of its
tokens is the model's likeliest next token. No sampling, so two checkpoints compare without noise in
~1 s per conversation on one thread: a check for checkpoints saved mid-run, next to `mmgen eval`,
which samples whole replies and grades. With --told, the quizzes are told scenes instead: the
picture described in the user's words and no picture at all (world.conversation.sample_told), so
the answers can only be read from the words. With --walk, count, "is there …?" and "where are the
…?" answers walk through the shapes first (world.questions.walk), as a model trained with
`--walk-rate` answers, and the marks count as tokens of the answer.
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch

from mmgen.data import CodeCache, world_to_stream
from mmgen.pipeline import load
from mmgen.stream import Stream
from mmgen.world.conversation import sample_quiz, sample_told, walked


def answers_right(lm, stream: Stream, conversation, streamed) -> list[tuple[str, bool]]:
    """(question kind, every answer token argmax-right) for each question of `conversation`."""
    ids = stream.encode(streamed).ids
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lm(input_ids=torch.tensor([ids])).logits[0]
    # among words and specials only, as decoding's grammar allows outside a picture and training's
    # loss normalises (train/loss.py): the picture codes' logits there are never trained
    likeliest = logits[:, :stream.image_offset].argmax(-1).tolist()
    out, at = [], 0
    for user, reply in zip(conversation.turns[::2], conversation.turns[1::2]):
        at = ids.index(stream.assistant, at) + 1          # the reply's first token
        if user.task != "ask":
            continue
        answer = stream.text.encode(reply.text)
        right = ids[at:at + len(answer)] == answer and likeliest[at - 1:at - 1 + len(answer)] == answer
        out.append((user.meta["question"], right))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", default="checkpoints",
                    help="folder with vq/ and lm/ (a mid-run save: a folder linking checkpoints/vq and the save as lm)")
    ap.add_argument("--n", type=int, default=150, help="quizzes or told scenes (eval split seeds 0..n-1)")
    ap.add_argument("--told", action="store_true", help="told scenes: the picture in words, no picture")
    ap.add_argument("--walk", action="store_true", help="count, exists and locate answers walk the shapes first")
    args = ap.parse_args()
    model = load(args.checkpoints, weights="native")
    lm, stream = model.lm.eval(), model.stream
    cache = CodeCache(model.vq.encode)
    asked, right = Counter(), Counter()
    sample = sample_told if args.told else sample_quiz
    for seed in range(args.n):
        conversation = sample(seed, split="eval", drill_rate=0.0)
        if args.walk:
            conversation = walked(conversation)
        for kind, ok in answers_right(lm, stream, conversation, world_to_stream([conversation], cache)[0]):
            asked[kind] += 1
            right[kind] += ok
    what = ("told scenes (no picture)" if args.told else "quizzes") + (", answers walked" if args.walk else "")
    print(f"{args.checkpoints}: {args.n} held-out {what}, answers exact under teacher forcing")
    for kind in sorted(asked):
        print(f"  {kind:12s} {right[kind]:4d} / {asked[kind]:4d}  {right[kind] / asked[kind]:.2f}")
    total = sum(asked.values())
    print(f"  {'all':12s} {sum(right.values()):4d} / {total:4d}  {sum(right.values()) / total:.3f}")


if __name__ == "__main__":
    main()
