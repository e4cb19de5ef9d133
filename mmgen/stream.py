"""The one token stream: conversations of words and pictures as ids, and back.

Vocabulary layout (one id space, three ranges):

    [0, text_vocab)                           text ids from the BPE tokenizer (mmgen/text.py)
    [text_vocab, text_vocab + n_special)      special ids: <pad> <bos> <eot> <user> <assistant> <image> </image>
    [image_offset, image_offset + codebook)   image code ids: VQ code c is id image_offset + c

A conversation is laid out as

    <bos> <user> [<image> c0 … c255 </image>] words <eot> <assistant> words [<image> c0 … c255 </image>] <eot> …

The user's picture (if any) comes before their words; the assistant's after. Loss falls only on
what the assistant says: its words, its <image> … </image> span and its closing <eot>.
Text a user types can never produce a special or image id: the text tokenizer has no
special tokens, so "<image>" is just the characters '<', 'i', … .
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from .text import TextTokenizer

IMAGE_SIDE = 16                              # codes per side of the picture grid
IMAGE_TOKENS = IMAGE_SIDE * IMAGE_SIDE       # 256 codes per picture, raster order
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eot>", "<user>", "<assistant>", "<image>", "</image>")
ROLES = ("user", "assistant")

# modality of each position
TEXT, SPECIAL, IMAGE = 0, 1, 2


class StreamError(ValueError):
    """A sequence of ids that is not a well-formed conversation."""


@dataclass(frozen=True)
class Turn:
    role: str
    text: str = ""
    codes: tuple[int, ...] | None = None     # 256 VQ codes in raster order, or no picture

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"turn text must be a str, not {type(self.text).__name__}")
        if self.codes is not None:
            codes = tuple(int(c) for c in _flatten(self.codes))
            if len(codes) != IMAGE_TOKENS:
                raise StreamError(f"a picture is {IMAGE_TOKENS} codes, got {len(codes)}")
            object.__setattr__(self, "codes", codes)


def _flatten(codes) -> list[int]:
    """Accept a flat sequence, a 16 × 16 nested list, a numpy array or a tensor."""
    if hasattr(codes, "reshape"):
        return [int(c) for c in codes.reshape(-1).tolist()]
    out = []
    for c in codes:
        if isinstance(c, (list, tuple)) or hasattr(c, "__len__"):
            out.extend(int(x) for x in c)
        else:
            out.append(int(c))
    return out


@dataclass(frozen=True)
class Conversation:
    turns: tuple[Turn, ...] = field(default_factory=tuple)

    def append(self, turn: Turn) -> "Conversation":
        return Conversation(self.turns + (turn,))

    def last_image_index(self) -> int | None:
        """Index of the latest turn that holds a picture (the one an edit applies to)."""
        for i in range(len(self.turns) - 1, -1, -1):
            if self.turns[i].codes is not None:
                return i
        return None


@dataclass
class Encoded:
    ids: list[int]
    loss_mask: list[bool]      # True where the model is trained to predict this id
    modality: list[int]        # TEXT / SPECIAL / IMAGE per position


class Stream:
    """Conversation <-> ids for one text tokenizer and one codebook size."""

    def __init__(self, text: TextTokenizer, codebook_size: int):
        self.text = text
        self.text_vocab = text.vocab_size
        self.codebook_size = int(codebook_size)
        self.special = {name: self.text_vocab + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.image_offset = self.text_vocab + len(SPECIAL_TOKENS)
        self.vocab_size = self.image_offset + self.codebook_size
        self.pad, self.bos, self.eot = self.special["<pad>"], self.special["<bos>"], self.special["<eot>"]
        self.user, self.assistant = self.special["<user>"], self.special["<assistant>"]
        self.image_start, self.image_end = self.special["<image>"], self.special["</image>"]

    # --- id ranges --------------------------------------------------------------------------
    def is_image_id(self, i: int) -> bool:
        return self.image_offset <= i < self.vocab_size

    def is_text_id(self, i: int) -> bool:
        return 0 <= i < self.text_vocab

    def letter_ids(self, glyph_codes: Sequence[int] = ()) -> list[int]:
        """Stream ids that are letters of a sign: the capital letters A-Z of the text tokenizer
        (each its own token) and the given lettering codes (vq.GlyphCodes.glyph_ids)."""
        capitals = [self.text.encode(chr(c)) for c in range(ord("A"), ord("Z") + 1)]
        assert all(len(t) == 1 for t in capitals), "the text tokenizer must spell capitals one token each"
        return sorted(t[0] for t in capitals) + self.code_ids([int(c) for c in glyph_codes])

    def code_ids(self, codes: Sequence[int]) -> list[int]:
        bad = [c for c in codes if not 0 <= c < self.codebook_size]
        if bad:
            raise StreamError(f"image code {bad[0]} is outside the codebook [0, {self.codebook_size})")
        return [self.image_offset + c for c in codes]

    # --- encoding ---------------------------------------------------------------------------
    def _image_span(self, codes, loss: bool, out: Encoded) -> None:
        ids = [self.image_start] + self.code_ids(codes) + [self.image_end]
        out.ids += ids
        out.loss_mask += [loss] * len(ids)
        out.modality += [SPECIAL] + [IMAGE] * IMAGE_TOKENS + [SPECIAL]

    def user_words(self, text: str) -> list[int]:
        """The ids of a user message's words, spelt with a space before the first one. The tokenizer
        spells a word at the start of a text apart from the same word after a space ("need" is `ne` `ed`
        there, `Ġneed` after "I "), and training messages hold every taught word after a space but
        only a few as their first: with the space, a message's first word reads as it does inside a
        sentence (the shipped model's generation 0.922 -> 0.963, docs/RESULTS.md)."""
        return self.text.encode(" " + text) if text else []

    def words(self, text: str, *, user: bool) -> list[int]:
        """The ids of a turn's words: a user's as `user_words` spells them, a reply's as written."""
        if user:
            return self.user_words(text)
        return self.text.encode(text) if text else []

    def _text(self, text: str, loss: bool, out: Encoded, *, user: bool = False) -> None:
        ids = self.words(text, user=user)
        out.ids += ids
        out.loss_mask += [loss] * len(ids)
        out.modality += [TEXT] * len(ids)

    def _special(self, i: int, loss: bool, out: Encoded) -> None:
        out.ids.append(i)
        out.loss_mask.append(loss)
        out.modality.append(SPECIAL)

    def encode(self, conversation: Conversation, *, generation_prompt: bool = False,
               drop_last_user_text: bool = False, drop_user_text: frozenset[int] = frozenset(),
               drop_reply_text: frozenset[int] = frozenset()) -> Encoded:
        """Ids, loss mask and modality of a conversation.

        generation_prompt: end with <assistant> so the model writes the next reply.
        drop_last_user_text: empty the words of the last user message — the unconditional
        branch of classifier-free guidance (pictures stay, so an edit keeps its picture).
        drop_user_text: indices of turns whose words are emptied (CFG dropout in training).
        drop_reply_text: indices of assistant turns whose words (not their picture) are emptied:
        CFG dropout of the reply that restates a request (generate.py).
        """
        out = Encoded(ids=[], loss_mask=[], modality=[])
        self._special(self.bos, False, out)
        last_user = max((i for i, t in enumerate(conversation.turns) if t.role == "user"), default=-1)
        for i, turn in enumerate(conversation.turns):
            if turn.role == "user":
                self._special(self.user, False, out)
                if turn.codes is not None:
                    self._image_span(turn.codes, False, out)
                dropped = i in drop_user_text or (drop_last_user_text and i == last_user)
                self._text("" if dropped else turn.text, False, out, user=True)
                self._special(self.eot, False, out)
            else:
                self._special(self.assistant, False, out)
                self._text("" if i in drop_reply_text else turn.text, True, out)
                if turn.codes is not None:
                    self._image_span(turn.codes, True, out)
                self._special(self.eot, True, out)
        if generation_prompt:
            self._special(self.assistant, False, out)
        return out

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> Conversation:
        """Ids back to a Conversation. Raises StreamError on anything malformed.

        A trailing unfinished assistant turn (no <eot> yet) is returned as far as it goes,
        so a partial generation can be read; an unfinished picture is an error.
        """
        ids = [int(i) for i in ids]
        pos = 0
        if ids[:1] == [self.bos]:
            pos = 1
        turns: list[Turn] = []
        while pos < len(ids):
            tag = ids[pos]
            if tag not in (self.user, self.assistant):
                raise StreamError(f"position {pos}: expected <user> or <assistant>, got {self.describe(tag)}")
            role = "user" if tag == self.user else "assistant"
            pos += 1
            text_ids: list[int] = []
            codes = None
            while pos < len(ids) and ids[pos] != self.eot:
                i = ids[pos]
                if i == self.image_start:
                    if codes is not None:
                        raise StreamError(f"position {pos}: a second picture in one turn")
                    if role == "user" and text_ids:
                        raise StreamError(f"position {pos}: a user's picture must come before their words")
                    span = ids[pos + 1:pos + 1 + IMAGE_TOKENS]
                    if len(span) < IMAGE_TOKENS or not all(self.is_image_id(c) for c in span):
                        n = next((k for k, c in enumerate(span) if not self.is_image_id(c)), len(span))
                        raise StreamError(f"position {pos}: a picture needs {IMAGE_TOKENS} image codes, found {n}")
                    end = pos + 1 + IMAGE_TOKENS
                    if end >= len(ids) or ids[end] != self.image_end:
                        raise StreamError(f"position {end}: a picture must close with </image> after {IMAGE_TOKENS} codes")
                    codes = tuple(c - self.image_offset for c in span)
                    pos = end + 1
                elif self.is_text_id(i):
                    if role == "assistant" and codes is not None:
                        raise StreamError(f"position {pos}: assistant words after its picture")
                    text_ids.append(i)
                    pos += 1
                else:
                    raise StreamError(f"position {pos}: unexpected {self.describe(i)} inside a {role} turn")
            text = self.text.decode(text_ids)
            if role == "user" and text.startswith(" "):
                text = text[1:]                       # the space user_words spells the first word with
            turns.append(Turn(role=role, text=text, codes=codes))
            pos += 1   # the <eot>
        return Conversation(tuple(turns))

    def describe(self, i: int) -> str:
        for name, j in self.special.items():
            if i == j:
                return name
        if self.is_image_id(i):
            return f"image code {i - self.image_offset}"
        if self.is_text_id(i):
            return f"text id {i}"
        return f"id {i} (outside the vocabulary of {self.vocab_size})"

    # --- length budget ----------------------------------------------------------------------
    def turn_length(self, turn: Turn) -> int:
        n = 2 + len(self.words(turn.text, user=turn.role == "user"))     # role tag + <eot>
        return n + (IMAGE_TOKENS + 2 if turn.codes is not None else 0)

    def fit(self, conversation: Conversation, max_tokens: int, *, reserve: int = 0) -> Conversation:
        """Drop turns so the encoding (plus `reserve` ids for the reply) fits in `max_tokens`.

        Policy: the oldest turns go first. Always kept: the latest user message, and the turn
        holding the latest picture (the one an edit applies to) — if that is not enough, its
        words are dropped but its picture stays. Raises StreamError if even that cannot fit.
        """
        turns = list(conversation.turns)
        budget = max_tokens - reserve - 1 - 1      # <bos> and the <assistant> of the prompt
        if not turns:
            return conversation
        keep = {len(turns) - 1}
        img = conversation.last_image_index()
        if img is not None:
            keep.add(img)
        lengths = [self.turn_length(t) for t in turns]
        used = sum(lengths[i] for i in keep)
        if used > budget and img is not None and img != len(turns) - 1:
            turns[img] = replace(turns[img], text="")        # keep the picture, not its words
            lengths[img] = self.turn_length(turns[img])
            used = sum(lengths[i] for i in keep)
        if used > budget:
            raise StreamError(f"the latest message and picture need {used + reserve + 2} tokens; the budget is {max_tokens}")
        for i in range(len(turns) - 2, -1, -1):            # newest first
            if i in keep:
                continue
            if used + lengths[i] > budget:
                break
            keep.add(i)
            used += lengths[i]
        kept = [turns[i] for i in sorted(keep)]
        # a conversation starts with the user: a leading assistant turn without its question
        # is kept only if it holds the picture being edited
        while len(kept) > 1 and kept[0].role == "assistant" and kept[0].codes is None:
            kept.pop(0)
        return Conversation(tuple(kept))
