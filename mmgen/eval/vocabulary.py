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


@lru_cache(maxsize=1)
def training_vocabulary() -> frozenset[str]:
    from ..world.conversation import sample_conversation
    words: set[str] = set()
    for seed in range(VOCABULARY_SAMPLE):
        for turn in sample_conversation(seed, "train").turns:
            if turn.role == "user":
                words |= words_of(turn.text)
    return frozenset(words)


def unseen_words(text: str) -> list[str]:
    """The words of `text` that no training message uses, sorted."""
    return sorted(words_of(text) - training_vocabulary())
