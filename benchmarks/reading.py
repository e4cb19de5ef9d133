"""Held-out questions answered under teacher forcing, by kind: how well the transformer reads pictures.

    python benchmarks/reading.py [--checkpoints checkpoints] [--n 150]

Quiz conversations of the eval split (held-out phrasings and scenes, no drills) are run through the
transformer once each, their true answers in place. An answer counts as right when every one of its
tokens is the model's likeliest next token. No sampling, so two checkpoints compare without noise in
~1 s per conversation on one thread: a check for checkpoints saved mid-run, next to `mmgen eval`,
which samples whole replies and grades. A reply that looks at the whole picture before it answers
(`questions.READ_FIRST_QUESTIONS`: "I see … — one") is graded twice: its look ("look" rows) and
its answer after the true look ("count", "exists", …); the kinds without a look are their answer.
Since replies look first, a quiz stops after one such question: the same 150 seeds hold 472 questions
(671 before) and answers after a look are scored with the look given, so "all" does not compare with
the rows of docs/RESULTS.md from before.
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch

from mmgen.data import CodeCache, world_to_stream
from mmgen.pipeline import load
from mmgen.stream import Stream
from mmgen.world.conversation import sample_quiz
from mmgen.world.language import READING_END, READING_PREFIX, split_reading


def argmax_right(ids: list[int], likeliest: list[int], at: int, expected: list[int]) -> bool:
    """Whether `expected` is at `at` in `ids` and each of its tokens is the likeliest there."""
    return ids[at:at + len(expected)] == expected and likeliest[at - 1:at - 1 + len(expected)] == expected


def answers_right(lm, stream: Stream, conversation, streamed) -> list[tuple[str, bool]]:
    """(question kind, every answer token argmax-right) for each question of `conversation`, and
    ("look " + kind, every token of the look argmax-right) before an answer that has one."""
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
        kind, (reading, _) = user.meta["question"], split_reading(reply.text)
        reply_ids = stream.text.encode(reply.text)
        # the look ends on its dash: the answer's first word carries its own leading space
        look = stream.text.encode(f"{READING_PREFIX}{reading}{READING_END.rstrip()}") if reading is not None else []
        if look:
            out.append(("look " + kind, argmax_right(ids, likeliest, at, look)))
        out.append((kind, argmax_right(ids, likeliest, at + len(look), reply_ids[len(look):])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", default="checkpoints",
                    help="folder with vq/ and lm/ (a mid-run save: a folder linking checkpoints/vq and the save as lm)")
    ap.add_argument("--n", type=int, default=150, help="quiz conversations (eval split seeds 0..n-1)")
    args = ap.parse_args()
    model = load(args.checkpoints, weights="native")
    lm, stream = model.lm.eval(), model.stream
    cache = CodeCache(model.vq.encode)
    asked, right = Counter(), Counter()
    for seed in range(args.n):
        conversation = sample_quiz(seed, split="eval", drill_rate=0.0)
        for kind, ok in answers_right(lm, stream, conversation, world_to_stream([conversation], cache)[0]):
            asked[kind] += 1
            right[kind] += ok
    print(f"{args.checkpoints}: {args.n} held-out quizzes, answers exact under teacher forcing")
    for kind in sorted(asked):
        print(f"  {kind:15s} {right[kind]:4d} / {asked[kind]:4d}  {right[kind] / asked[kind]:.2f}")
    for name, rows in (("all", [k for k in asked if not k.startswith("look ")]),
                       ("all looks", [k for k in asked if k.startswith("look ")])):
        total, good = sum(asked[k] for k in rows), sum(right[k] for k in rows)
        if total:
            print(f"  {name:15s} {good:4d} / {total:4d}  {good / total:.3f}")


if __name__ == "__main__":
    main()
