"""Yes/no and count questions about pictures the user gives, training-split scenes, greedy answers.

    python benchmarks/yes_no.py [--checkpoints checkpoints] [--n 30]

Question i is about `sample_scene(50_000 + i)` and asks, in turn, whether a thing is there, whether
a shape has a colour, and how many of a thing there are. Each answer is printed with the truth and
graded by `eval.benchmark.answers_match` (the yes or no, and the evidence where given). A quick look at
whether yes/no answers follow the picture, for checkpoints saved mid-run; `mmgen eval` grades.

Then the verdict alone: colour checks with their true answer written up to "… red?", and the
probability the model gives "yes" against "no" there, over the checks whose truth is yes and those
whose truth is no. A model that compares the colour asked with the colour seen gives the first
near 1 and the second near 0; one that does not, the same to both.

Last, the same thing asked two ways on the same picture, each in a chat of its own: "is there
{a thing}?" and "how many {things}?". Both answers carry the count; a model that reads the picture
once for both gets them right together, and the table of (is there right, how many right) shows
where one way of asking reads the picture and the other does not.
"""
from __future__ import annotations

import argparse
import random

import torch

from mmgen.eval.benchmark import answers_match
from mmgen.pipeline import Pipeline, load
from mmgen.stream import Conversation, Turn
from mmgen.world import render
from mmgen.world.questions import NO, YES, count_question, exists_question, pick_thing, sample_question, verdict
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
    print_verdicts(model, args.n)
    print_pairs(model, args.n)


def verdict_p_yes(model, question, picture) -> float:
    """p(yes) / (p(yes) + p(no)) for the verdict's first token, the answer teacher-forced up to it."""
    s = model.stream
    before = question.answer.rsplit(" ", 1)[0]                # "it's orange — red?"
    prefix = s.text.encode(before)
    yes, no = (s.text.encode(f"{before} {word}")[len(prefix)] for word in (YES, NO))
    codes = Pipeline(model).encode(picture)
    ids = s.encode(Conversation((Turn("user", question.text, codes),)), generation_prompt=True).ids + prefix
    with torch.no_grad():
        logits = model.lm(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].float()
    return float(torch.sigmoid(logits[yes] - logits[no]))


def print_verdicts(model, n: int) -> None:
    by_truth = {YES: [], NO: []}
    for i in range(n):
        scene = sample_scene(FIRST_SCENE + n + i)
        q = sample_question(scene, random.Random(n + i), "train", kind="check_color")
        if q is not None:
            by_truth[verdict(q.answer)].append(verdict_p_yes(model, q, render(scene)))
    for truth, ps in by_truth.items():
        if ps:
            print(f"colour checks whose answer is {truth:<3}: mean p(yes) {sum(ps) / len(ps):.3f}, "
                  f"verdict right {sum((p > 0.5) == (truth == YES) for p in ps)}/{len(ps)}")


def print_pairs(model, n: int) -> None:
    """"is there …?" and "how many …?" about one thing on one picture, for n pictures."""
    table = {(e, c): 0 for e in (True, False) for c in (True, False)}
    for i in range(n):
        scene = sample_scene(FIRST_SCENE + 2 * n + i)
        rng = random.Random(2 * n + i)
        shape, color = pick_thing(scene, rng)
        right = []
        for q in (exists_question(scene, shape, color, rng), count_question(scene, shape, color, rng)):
            reply = model.chat(seed=i, refine=False).send(q.text, image=render(scene), picture="never")
            right.append(answers_match(reply.text, q.answer, q.kind))
            print(f"{'ok ' if right[-1] else 'BAD'} {q.text} | {q.answer} | {reply.text}")
        table[tuple(right)] += 1
    print("the same thing asked two ways (is there right, how many right): "
          + ", ".join(f"{'right' if e else 'wrong'}/{'right' if c else 'wrong'} {k}" for (e, c), k in table.items()))


if __name__ == "__main__":
    main()
