"""Words of a message that the model was never taught, said back to the user instead of dropped.

A model learns only the words its training messages use. Asked for "a cat next to a red circle",
the shipped one draws the circle, and nothing would say why the cat is missing. Its checkpoint
lists the words it was taught (lm/vocabulary.json, written by `mmgen train lm`); a reply carries a
note naming the message's other words, asking about the taught word a slip of the keyboard may
have meant, and saying how a sign's word is written:

    vocabulary = load_vocabulary("checkpoints/lm")        # None when the checkpoint has no list
    note("draw a cat and a squre", vocabulary)
    # 'I don't know the word "cat". Did you mean "square" for "squre"?'

A sign's word in quotes or capitals ("HELLO") is drawn letter by letter and is never looked up.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from .io import atomic_write_json
from .world.scene import WORD_ALPHABET, WORD_MAX_LEN, WORD_MIN_LEN
from .world.typos import NEIGHBOURS, QUOTED

VOCABULARY_FILE = "vocabulary.json"
# letters, with inner apostrophes ("i'd"), not stuck to a digit or an underscore ("2nd" is no word)
_WORD = re.compile(r"(?<![\w'])[^\W\d_]+(?:'[^\W\d_]+)*(?![\w])")
# words the world writes just before a sign's word: 'a sign that says HELLO', 'the word HELLO'
SIGN_LEAD_INS = frozenset("word says say saying reads read reading write text letters lettering label caption "
                          "spells spelling".split())
# two or more words in capitals side by side on one line ("Draw A RED CIRCLE", "says HI THERE"), or
# quoted ("OPEN NOW"): a sign holds one word (`capitals_sentence`)
_CAPITALS_RUN = re.compile(r"\b[A-Z]{2,}(?:[ \t]+[A-Z]+)*[ \t]+[A-Z]{2,}\b")
_QUOTED_PHRASE = re.compile(r'"([^"\s]+(?:\s+[^"\s]+)+)"')
_LAST_WORD = re.compile(r"(\w+)\W*$")
MIN_GUESS_LETTERS = 4        # a shorter word is too short to guess the taught word it mistypes
MAX_NAMED = 6                # the most unknown words a note names; it counts the rest


def message_words(text: str) -> list[str]:
    """The lower-cased words of a message in order, less a sign's word (quoted, or in capitals) and
    single letters (":D", "x" in "3 x 3")."""
    text = QUOTED.sub(" ", text)
    words = (w.lower() for w in _WORD.findall(text) if not (len(w) > 1 and w.isupper()))
    return [w for w in words if len(w) > 1 or w in ("a", "i")]


def words_of(text: str) -> set[str]:
    """The set of a message's words (message_words)."""
    return set(message_words(text))


def write_vocabulary(folder: str | Path, words) -> None:
    """Store the taught words next to the weights, sorted, one JSON list."""
    atomic_write_json(Path(folder) / VOCABULARY_FILE, {"words": sorted(words)})


def load_vocabulary(folder: str | Path) -> frozenset[str] | None:
    """The words a checkpoint was taught; None when it lists none (then no reply carries a note).
    A damaged list is an error: silently dropping the notes would hide it."""
    path = Path(folder) / VOCABULARY_FILE
    if not path.is_file():
        return None
    try:
        words = json.loads(path.read_text(encoding="utf-8"))["words"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a vocabulary list ({e})") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{path} is not a vocabulary list: 'words' must be a list of strings")
    return frozenset(words)


def unknown_words(text: str, vocabulary: frozenset[str]) -> list[str]:
    """The words of `text` not in `vocabulary`, each once, in the order they come. A possessive of
    a taught word ("circle's") is taught."""
    return list(dict.fromkeys(w for w in message_words(text)
                              if w not in vocabulary and w.removesuffix("'s") not in vocabulary))


def one_slip_apart(typed: str, word: str) -> bool:
    """Whether one slip of the keyboard turns `word` into `typed`: a letter dropped or doubled, two
    neighbours swapped, or a key's neighbour hit instead (the slips world/typos.py makes)."""
    if len(typed) == len(word) - 1:                                           # dropped
        return any(word[:i] + word[i + 1:] == typed for i in range(len(word)))
    if len(typed) == len(word) + 1:                                           # doubled
        return any(typed[i] == typed[i + 1] and typed[:i] + typed[i + 1:] == word for i in range(len(word)))
    if len(typed) != len(word) or typed == word:
        return False
    diff = [i for i, (x, y) in enumerate(zip(typed, word)) if x != y]
    if len(diff) == 1:                                                        # a neighbouring key
        return typed[diff[0]] in NEIGHBOURS.get(word[diff[0]], "")
    i, j = diff[0], diff[-1]
    return len(diff) == 2 and j == i + 1 and typed[i] == word[j] and typed[j] == word[i]    # swapped


def nearest_taught(word: str, vocabulary: frozenset[str]) -> str | None:
    """The taught word that `word` is one slip away from, else None; on a tie the one with the same
    first and last letters (slips rarely touch those). A possessive is guessed from its word
    ("cooor's": "color's"), and a possessive is never the guess for a plain word ("colors")."""
    if word.endswith("'s"):
        base = nearest_taught(word[:-2], vocabulary)
        return base + "'s" if base else None
    if len(word) < MIN_GUESS_LETTERS:
        return None
    close = sorted((w[0] != word[0], w[-1] != word[-1], w) for w in vocabulary
                   if "'" not in w and len(w) >= MIN_GUESS_LETTERS and one_slip_apart(word, w))
    return close[0][2] if close else None


def drawable_sign_word(word: str) -> bool:
    """Whether a sign can hold `word` in capitals (2-8 letters A-Z)."""
    return WORD_MIN_LEN <= len(word) <= WORD_MAX_LEN and all(c in WORD_ALPHABET for c in word.upper())


def _listed(items: list[str]) -> str:
    """'"a"', '"a" and "b"', '"a", "b" and "c"', with at most MAX_NAMED named and the rest counted."""
    named, more = items[:MAX_NAMED], len(items) - MAX_NAMED
    if more > 0:
        return ", ".join(named) + f" and {more} more"
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def note(text: str, vocabulary: frozenset[str] | None) -> str:
    """What to tell the user about the words of `text` the model was not taught; "" when there are
    none (or the checkpoint lists no vocabulary). A likely slip is asked about rather than called
    unknown: a model trained on slips may well have read it right."""
    if vocabulary is None:
        return ""
    unknown = unknown_words(text, vocabulary)
    words = message_words(text)
    follows = {w: words[i - 1] for i, w in reversed(list(enumerate(words))) if i}    # the word before its first use
    sign = [w for w in unknown if follows.get(w) in SIGN_LEAD_INS and drawable_sign_word(w)]
    guesses = {w: nearest_taught(w, vocabulary) for w in unknown if w not in sign}
    strange = [f'"{w}"' for w in unknown if w not in sign and guesses[w] is None]
    slips = [f'"{guesses[w]}" for "{w}"' for w in unknown if guesses.get(w)]
    sentences = []
    if strange:
        sentences.append(f"I don't know the word{'s' if len(strange) > 1 else ''} {_listed(strange)}.")
    if slips:
        sentences.append(f"Did you mean {_listed(slips)}?")
    if sign:
        capitals = [f'"{w.upper()}"' for w in sign]
        sentences.append(f"A sign's word goes in capitals: {_listed(capitals)}.")
    return " ".join(sentences + [capitals_sentence(text)]).strip()


@lru_cache(maxsize=1)
def _picture_words() -> frozenset[str]:
    """The words that name the world's shapes and colours, synonyms included ("box", "navy")."""
    from .world.language import COLOR_SYNONYMS, SHAPE_SYNONYMS
    from .world.scene import OBJECT_COLORS, SHAPES
    names = [*SHAPES, *OBJECT_COLORS, *(w for ws in (*SHAPE_SYNONYMS.values(), *COLOR_SYNONYMS.values()) for w in ws)]
    return frozenset(part for name in names for part in name.split())


def _names_a_picture_thing(words: list[str]) -> bool:
    """Whether a shape or colour is among `words` (lower case), plurals too ("circles", "boxes")."""
    known = _picture_words()
    return any(w in known or w[:-1] in known or w[:-2] in known for w in words)


def capitals_sentence(text: str) -> str:
    """What to say of several words meant for one sign: after a sign's lead-in ("says HI THERE") or in
    quotes, that only part may be drawn; capitals naming shapes or colours ("Draw A RED CIRCLE"),
    that they may be read as a sign's word. "" otherwise ("OK THANKS" is only loud)."""
    quoted = _QUOTED_PHRASE.search(text)
    if quoted is not None:
        return f'A sign holds one word, so only part of "{quoted.group(1)}" may be drawn.'
    run = _CAPITALS_RUN.search(QUOTED.sub(" ", text))
    if run is None:
        return ""
    words = run.group().split()
    before = _LAST_WORD.search(text[:run.start()])
    if before is not None and before.group(1).lower() in SIGN_LEAD_INS:
        return f'A sign holds one word, so only part of "{" ".join(words)}" may be drawn.'
    if not _names_a_picture_thing([w.lower() for w in words]):
        return ""
    phrase = " ".join(words)
    return (f'Words in capitals go on a sign, and a sign holds one word: "{phrase}" may be read as a sign\'s '
            f'word. Shapes and colours go in lower case ("{phrase.lower()}").')
