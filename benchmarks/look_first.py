"""Where a wrong answer about where things are or how many goes wrong: in the look or in the answer.

    python benchmarks/look_first.py [--checkpoints checkpoints] [--n 110]

The questions of `mmgen eval --parts ask` (held-out phrasings and scenes, the same cases) whose kind
is said after a look at the whole picture (`questions.READ_FIRST_QUESTIONS`: how many, is there,
where is, where are). Each reply is split into its look (`language.split_reading`) and its answer;
a checkpoint that answers without a look is asked "describe the picture" of the same picture, in a chat
of its own, and that description stands in for the look. The look is right when it is the picture's `describe`
word for word; the answer is graded by `eval.benchmark.answers_match`. The table crosses the two:
wrong answers after a right look are the answer's fault (picking things out of words just
written), wrong answers after a wrong look the look's.
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch

from mmgen.eval.benchmark import answers_match, ask_case, question_cases
from mmgen.pipeline import load
from mmgen.world.language import describe, split_reading
from mmgen.world.questions import READ_FIRST_QUESTIONS

DESCRIBE = "describe the picture"


def look_of(model, i: int, p, reply_text: str, seed: int) -> tuple[str, bool]:
    """(where the look came from, whether it is right) for case i's reply."""
    reading, _ = split_reading(reply_text)
    if reading is not None:
        return "said first", reading == describe(p.scene)
    asked = ask_case(model, i, p, DESCRIBE, seed, {}).text
    return "asked after", asked == describe(p.scene)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None, help="checkpoints folder (default: the shipped one)")
    ap.add_argument("--n", type=int, default=110, help="cases of `mmgen eval --parts ask` to go through")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load(args.checkpoints)
    table, kinds = Counter(), Counter()
    for i, p, q in question_cases(args.n):
        if q.kind not in READ_FIRST_QUESTIONS:
            continue
        reply = ask_case(model, i, p, q.text, args.seed, {}).text
        source, look_right = look_of(model, i, p, reply, args.seed)
        answer_right = answers_match(reply, q.answer, q.kind)
        table[(source, look_right, answer_right)] += 1
        kinds[(q.kind, answer_right)] += 1
        print(f"{'ok ' if answer_right else 'BAD'} look {'right' if look_right else 'WRONG'} ({source}) | "
              f"{q.text} | {q.answer} | {reply}")
    cases = sum(table.values())
    print(f"\n{args.checkpoints or 'shipped'}: {cases} questions of kinds {', '.join(READ_FIRST_QUESTIONS)}")
    print(f"{'look':<12} {'look right':>10} {'answer right':>13} {'cases':>6}")
    for (source, look_right, answer_right), count in sorted(table.items()):
        print(f"{source:<12} {str(look_right):>10} {str(answer_right):>13} {count:>6}")
    for kind in READ_FIRST_QUESTIONS:
        right, wrong = kinds[(kind, True)], kinds[(kind, False)]
        print(f"  {kind:<9} {right:>3} / {right + wrong:<3} answers right")
    looks = sum(c for (_, look, _), c in table.items() if look)
    answers = sum(c for (_, _, ok), c in table.items() if ok)
    print(f"looks right {looks}/{cases}, answers right {answers}/{cases}")


if __name__ == "__main__":
    main()
