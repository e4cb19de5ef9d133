"""Typing slips in what users write: "make the star yelow", "draw a sqaure".

People chatting type fast. A model that has only seen clean spellings reads "yelow" as a word it
does not know, and may do something else entirely (a trial of the shipped model: "make the circle
yelow" removed the circle). Training on messages with a slip in them — one letter dropped, doubled,
swapped with its neighbour or hit on a neighbouring key, the slips that make most typing errors —
teaches that a misspelt word means what it nearly spells. The reply stays the one to the clean
message.

Only lower-case words of `MIN_LETTERS` or more are slipped: the words on a sign are upper-case and
quoted (a sign must say exactly what was asked), and short words ("a", "to", "red") turn into other
words when a letter goes.
"""
from __future__ import annotations

import random
import re
from dataclasses import replace

MIN_LETTERS = 4
SLIPS = ("drop", "double", "swap", "neighbour")

# the keys around each letter on a QWERTY keyboard, where a finger lands when it misses
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {
    ch: "".join(_ROWS[r2][c2] for r2 in (r - 1, r, r + 1) if 0 <= r2 < 3
                for c2 in (c - 1, c, c + 1) if 0 <= c2 < len(_ROWS[r2]) and (r2, c2) != (r, c))
    for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}

_WORD = re.compile(r"\b[a-z]{%d,}\b" % MIN_LETTERS)
QUOTED = re.compile(r'"[^"]*"')    # a sign's word in quotes: never slipped, never looked up


def slippable_words(text: str) -> list[re.Match]:
    """The words of `text` a slip may fall on: lower-case, `MIN_LETTERS` or more letters, not quoted."""
    quoted = [m.span() for m in QUOTED.finditer(text)]
    return [m for m in _WORD.finditer(text) if not any(a <= m.start() < b for a, b in quoted)]


def slip(word: str, rng: random.Random) -> str:
    """`word` with one slip (`SLIPS`), never the word itself. The first letter stays, as it mostly
    does, and so does the last: "circles" must not become "circle"."""
    kind = rng.choice(SLIPS)
    i = rng.randrange(1, len(word) - 1)                  # neither the first letter nor the last
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i + 2 < len(word) and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + rng.choice(NEIGHBOURS[word[i]]) + word[i + 1:]     # a neighbouring key


def misspell(text: str, rng: random.Random) -> str:
    """`text` with one slip in one of its slippable words (the text itself when it has none)."""
    words = slippable_words(text)
    if not words:
        return text
    m = rng.choice(words)
    return text[:m.start()] + slip(m.group(), rng) + text[m.end():]


def with_typos(conversation, rng: random.Random, rate: float):
    """`conversation` (world.conversation.Conversation) with each user message misspelt (`misspell`)
    with probability `rate`; replies and pictures unchanged."""
    turns = [replace(t, text=misspell(t.text, rng)) if t.role == "user" and t.text and rng.random() < rate else t
             for t in conversation.turns]
    return replace(conversation, turns=turns)
