"""How often a reply's note on untaught words (mmgen/unknown_words.py) is wrong, and how often it guesses a slip right.

    python benchmarks/unknown_words.py [--checkpoints checkpoints] [--n 1000]

False notes: the user messages of n conversations each of the checkpoint's last training mix, the eval
split and the held-out paraphrase split use only taught words (WORLD.md), so every note there is a false
one. Slips: one slippable word of each message slipped the way `mmgen train lm --typo-rate` slips it
(world/typos.py); a slip that spells another taught word cannot be noticed, the rest should be guessed,
and the guess should be the word meant. No model is loaded: this measures the list and the guessing.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from mmgen.eval.vocabulary import mix_of
from mmgen.pipeline import DEFAULT_CHECKPOINTS
from mmgen.unknown_words import load_vocabulary, nearest_taught, note
from mmgen.world.conversation import sample_conversation
from mmgen.world.typos import slip, slippable_words


def messages(checkpoints: Path, n: int) -> list[str]:
    runs = json.loads((checkpoints / "lm" / "config.json").read_text())["mmgen_training"]["runs"]
    mixes = [("train", dict(mix_of(runs[-1]))), ("eval", {}), ("paraphrase", {})]
    return [t.text for split, mix in mixes for seed in range(n)
            for t in sample_conversation(seed, split, **mix).turns if t.role == "user"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS)
    p.add_argument("--n", type=int, default=1000, help="conversations of each source")
    args = p.parse_args()
    taught = load_vocabulary(args.checkpoints / "lm")
    if taught is None:
        raise SystemExit(f"{args.checkpoints / 'lm'} lists no vocabulary")
    texts = messages(args.checkpoints, args.n)
    noted = [t for t in texts if note(t, taught)]
    print(f"{len(taught)} taught words; {len(noted)} of {len(texts)} clean messages get a note")
    for t in noted[:10]:
        print("  ", t, "->", note(t, taught))
    rng = random.Random(0)
    slips = other_word = guessed = right = 0
    for text in texts:
        words = slippable_words(text)
        if not words:
            continue
        meant = rng.choice(words).group()
        typed = slip(meant, rng)
        slips += 1
        if typed in taught:
            other_word += 1
            continue
        guess = nearest_taught(typed, taught)
        guessed += guess is not None
        right += guess == meant
    print(f"{slips} slips: {other_word} spell another taught word; of the rest, {guessed} guessed "
          f"({guessed / max(1, slips - other_word):.1%}), {right} guessed right ({right / max(1, guessed):.1%} of guesses)")


if __name__ == "__main__":
    main()
