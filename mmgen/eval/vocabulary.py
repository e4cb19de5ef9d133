"""Which words of a message no training message ever uses.

The benchmark asks only in held-out phrasings — sentence frames no training message uses — but
in words that training messages do use: a model trained from scratch on the world cannot learn a
word it never saw (nothing in its data would say a hue is a colour), and users are not tested on
vocabulary, so every word of a held-out frame also appears in some training frame ("what hue is
{ref}?" trains the word, "which hue does {ref} have?" is held out). `mmgen eval` still tags every
case with its message's unseen words (a synonym or slot filler that training happens to lack) and
reports each part over two subsets: new phrasings of known words, the headline, and phrasings
with a word never seen, a diagnostic.

    unseen_words("which hue does the plus have?")     # ['hue']

The training vocabulary is read off the training conversations themselves (their user turns,
`VOCABULARY_SAMPLE` of them), not off the phrasing tables, so it includes every slot filler —
colour and shape synonyms, places, counts, small talk — exactly as training produces them.
"""
from __future__ import annotations

from functools import lru_cache

from ..unknown_words import words_of

VOCABULARY_SAMPLE = 20_000          # training conversations read; a word seen less often is rare anyway
MIX_RATES = ("sign_rate", "chain_rate", "quiz_rate", "group_rate", "told_rate", "walk_rate", "drill_rate",
             "no_picture_rate", "small_talk_rate")


def mix_of(run: dict) -> tuple:
    """The data mix of a training run (its record in mmgen_training["runs"], or `train.lm.data_mix`)
    as sample_conversation's rates, hashable. Typing slips are left out: a slip is not a word taught."""
    return tuple((k, float(run[k])) for k in MIX_RATES if run.get(k) is not None) + (
        ("drill_kinds", tuple(run["drill_kinds"]) if run.get("drill_kinds") else None),)


@lru_cache(maxsize=16)
def training_vocabulary(mix: tuple = ()) -> frozenset[str]:
    """The words of the user messages of `VOCABULARY_SAMPLE` training conversations drawn with `mix`
    (`mix_of`; empty: sample_conversation's defaults, the plain scene-and-edit conversations)."""
    from ..world.conversation import sample_conversation
    rates = dict(mix)
    words: set[str] = set()
    for seed in range(VOCABULARY_SAMPLE):
        for turn in sample_conversation(seed, "train", **rates).turns:
            if turn.role == "user":
                words |= words_of(turn.text)
    return frozenset(words)


def taught_vocabulary(runs: list[dict]) -> frozenset[str]:
    """Every word the runs of a checkpoint's training (mmgen_training["runs"]) taught: the union over
    their distinct mixes, and the plain conversations every mix holds."""
    mixes = dict.fromkeys([()] + [mix_of(r) for r in runs])
    return frozenset().union(*(training_vocabulary(m) for m in mixes))


def unseen_words(text: str) -> list[str]:
    """The words of `text` that no training message uses, sorted."""
    return sorted(words_of(text) - training_vocabulary())
