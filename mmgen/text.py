"""The text tokenizer: byte-level BPE trained with `tokenizers`, capitals spelled letter by letter.

Any string a user can type encodes with no unknown tokens (byte-level BPE covers every byte)
and decodes back to itself. Every capital letter A-Z is its own pre-token, so a sign's word —
"OPEN", "ZORB" — is always the same few single-letter tokens: the model learns to draw and
read letters, not memorised words, and an unseen word is as drawable as a common one.

The files live in `tokenizer/` and are rebuilt with `python tokenizer/build.py`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from .io import atomic_write

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "tokenizer"
DEFAULT_VOCAB_SIZE = 4096
CAPITAL_LETTER = Regex("[A-Z]")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(CAPITAL_LETTER, behavior="isolated"),   # "OPEN" -> O P E N
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """Train a byte-level BPE on `texts`. No special tokens: those live in the stream's id space."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class TextTokenizer:
    """str <-> list of text ids in [0, vocab_size)."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def from_pretrained(cls, path: str | Path = TOKENIZER_DIR) -> "TextTokenizer":
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no text tokenizer at {file}; build it with `python tokenizer/build.py`")
        return cls(Tokenizer.from_file(str(file)))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / "tokenizer.json", self._tok.save)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)
