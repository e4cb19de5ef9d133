"""Words of a message that the model was never taught, said back to the user instead of dropped.

A model learns only the words its training messages use. Asked for "a cat next to a red circle",
the shipped one draws the circle, and nothing would say why the cat is missing. Its checkpoint
lists the words it was taught (lm/vocabulary.json, written by `mmgen train lm`); a reply carries a
note naming the message's other words and, for a likely slip of the keyboard, the taught word
nearest to it:

    vocabulary = load_vocabulary("checkpoints/lm")        # None when the checkpoint has no list
    note("draw a cat and a squre", vocabulary)
    # 'I don't know the words "cat" and "squre" (did you mean "square"?).'

A sign's word is never unknown: it is in quotes or capitals ("HELLO"), drawn letter by letter.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .io import atomic_write_json

VOCABULARY_FILE = "vocabulary.json"
_QUOTED = re.compile(r'"[^"]*"')
_WORD = re.compile(r"[A-Za-z']+")
SIGN_VERBS = ("says", "say", "saying", "reads", "read", "reading", "write", "written", "spells", "spelling")


def message_words(text: str) -> list[str]:
    """The lower-cased words of a message in order, less a sign's word (quoted, or in capitals)."""
    text = _QUOTED.sub(" ", text)
    words = (w.lower().strip("'") for w in _WORD.findall(text) if not (len(w) > 1 and w.isupper()))
    return [w for w in words if w]


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
    """The words of `text` not in `vocabulary`, each once, in the order they come."""
    return list(dict.fromkeys(w for w in message_words(text) if w not in vocabulary))


def one_slip_apart(a: str, b: str) -> bool:
    """Whether one slip of the keyboard turns b into a: a letter dropped, doubled or added, two
    neighbours swapped, or one mistyped (world/typos.py makes the same slips)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def nearest_taught(word: str, vocabulary: frozenset[str]) -> str | None:
    """The taught word that `word` is one slip away from, else None; on a tie the one with the same
    first and last letters (slips rarely touch those). Words under four letters are too short to
    guess from."""
    if len(word) < 4:
        return None
    close = sorted((w[0] != word[0], w[-1] != word[-1], w) for w in vocabulary
                   if len(w) >= 4 and one_slip_apart(word, w))
    return close[0][2] if close else None


def hint(word: str, before: str | None, vocabulary: frozenset[str]) -> str:
    """What to say after an unknown word: a sign's word after "says" is drawn only in capitals;
    else the taught word it mistypes, if any."""
    if before in SIGN_VERBS:
        return f' (a sign\'s word goes in capitals: "{word.upper()}")'
    guess = nearest_taught(word, vocabulary)
    return f' (did you mean "{guess}"?)' if guess else ""


def note(text: str, vocabulary: frozenset[str] | None) -> str:
    """One sentence about the words of `text` the model was not taught; "" when there are none
    (or the checkpoint lists no vocabulary)."""
    if vocabulary is None:
        return ""
    unknown = unknown_words(text, vocabulary)
    if not unknown:
        return ""
    words = message_words(text)
    before = {w: words[i - 1] if i else None for i, w in reversed(list(enumerate(words)))}   # first place
    named = [f'"{word}"' + hint(word, before[word], vocabulary) for word in unknown]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return f"I don't know the word{'s' if len(unknown) > 1 else ''} {listed}."
