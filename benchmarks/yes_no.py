"""Yes/no and count questions about pictures the user gives, training-split scenes, greedy answers.

    python benchmarks/yes_no.py [--checkpoints checkpoints] [--n 30]

Question i is about `sample_scene(50_000 + i)` and asks, in turn, whether a thing is there, whether
a shape has a colour, and how many of a thing there are. Each answer is printed with the truth and
graded by `eval.benchmark.answers_match` (the whole answer, or a bare yes or no). A quick look at
whether yes/no answers follow the picture, for checkpoints saved mid-run; `mmgen eval` grades.
"""
from __future__ import annotations

import argparse
import random

from mmgen.eval.benchmark import answers_match
from mmgen.pipeline import load
from mmgen.world import render
from mmgen.world.questions import sample_question
from mmgen.world.scene import sample_scene

KINDS = ("exists", "check_color", "count")
FIRST_SCENE = 50_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None, help="checkpoints folder (default: the shipped one)")
    ap.add_argument("--n", type=int, default=30, help="questions")
    args = ap.parse_args()
    model = load(args.checkpoints)
    right = asked = 0
    for i in range(args.n):
        scene = sample_scene(FIRST_SCENE + i)
        q = sample_question(scene, random.Random(i), "train", kind=KINDS[i % len(KINDS)])
        if q is None:
            continue
        reply = model.chat(seed=i, refine=False).send(q.text, image=render(scene), picture="never")
        ok = answers_match(reply.text, q.answer, q.kind)
        right, asked = right + ok, asked + 1
        print(f"{'ok ' if ok else 'BAD'} {q.text} | {q.answer} | {reply.text}")
    print(f"{right}/{asked} right")


if __name__ == "__main__":
    main()
