"""The transformer: a `transformers` Llama-family causal LM over the one token stream.

We build it from a small config with named presets instead of writing our own attention:
`LlamaForCausalLM` gives RoPE, GQA, SDPA/flash-attention, KV caches and safetensors
save/load, all well tested. What is ours is the preset table, the stream-aware metadata
stored next to the weights (vocabulary layout, training progress) and one addition to the
input: row and column embeddings on image codes, letter places on a sign's letters in words and
in pictures, the word's letter where a picture's code is predicted and the picture's letter where
a word is (`StreamEmbedding`, saved as `MMGenForCausalLM`; checkpoints without them load as they were).

    from mmgen.model import build_model, load_model
    model = build_model("small", vocab_size=stream.vocab_size)
    model.save_pretrained("checkpoints/lm")          # config.json + model.safetensors
    model = load_model("checkpoints/lm")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from .stream import IMAGE_SIDE, IMAGE_TOKENS

LETTER_PLACES = 8        # the longest sign word (mmgen.world.lettering)


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    context: int = 2048


PRESETS: dict[str, Preset] = {
    "tiny": Preset(hidden=64, layers=2, heads=4, kv_heads=2, mlp=128, context=1024),    # tests
    "draft": Preset(hidden=192, layers=2, heads=3, kv_heads=1, mlp=512),               # speculative drafts
    "small": Preset(hidden=384, layers=8, heads=6, kv_heads=2, mlp=1024),              # shipped, CPU
    "base": Preset(hidden=768, layers=12, heads=12, kv_heads=4, mlp=2048),             # one GPU
    "large": Preset(hidden=1536, layers=24, heads=16, kv_heads=8, mlp=4096, context=4096),  # many GPUs
}


# --- where a code sits in its picture ----------------------------------------------------------
def image_code_index(ids: torch.Tensor, image_start: int, image_offset: int) -> torch.Tensor:
    """For every position of ids [..., T]: the index 0..255 of the image code there within its
    picture (raster order), or -1 where the id is not an image code.

    The stream puts exactly 256 codes right after each <image>, so a code's index is its
    distance from the last <image> minus one.
    """
    t = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    start = torch.where(ids == image_start, t, torch.full_like(t, -1)).cummax(dim=-1).values
    index = t - start - 1
    valid = (ids >= image_offset) & (start >= 0) & (index < IMAGE_TOKENS)
    return torch.where(valid, index, torch.full_like(index, -1))


def predicted_code_index(ids: torch.Tensor, image_start: int, index: torch.Tensor) -> torch.Tensor:
    """For every position of ids: the index 0..255 of the code it predicts — <image> predicts code
    0, the position holding code j predicts code j + 1 — or -1 (`index`: image_code_index(ids))."""
    return torch.where(ids == image_start, torch.zeros_like(index),
                       torch.where((index >= 0) & (index < IMAGE_TOKENS - 1), index + 1, torch.full_like(index, -1)))


def reference_ids(ids: torch.Tensor, image_start: int, image_offset: int,
                  index: torch.Tensor | None = None) -> torch.Tensor:
    """For every position of ids [B, T]: the id of the code at the same place in the previous
    picture as the code this position predicts, or -1 where there is none.

    A position predicts code j of picture k when it holds <image> (j = 0) or code j − 1 of
    picture k; its reference is code j of picture k − 1 (the picture being edited, whoever gave it).
    `index`: image_code_index(ids, …), when the caller has it already.
    """
    B, T = ids.shape
    is_start = ids == image_start
    picture = is_start.long().cumsum(-1)                          # 1-based picture each position is in
    index = image_code_index(ids, image_start, image_offset) if index is None else index
    target = predicted_code_index(ids, image_start, index)
    starts = torch.full((B, T + 1), -1, dtype=torch.long, device=ids.device)   # starts[b, k]: <image> of picture k
    rows, cols = is_start.nonzero(as_tuple=True)
    starts[rows, picture[rows, cols]] = cols
    previous = starts.gather(1, (picture - 1).clamp(min=0))       # starts[:, 0] is -1: no picture before
    current = starts.gather(1, picture)
    source = (previous + 1 + target).clamp(0, T - 1)
    ref = ids.gather(1, source)
    # inside the previous picture's codes (a cut-short picture has no code there)
    valid = (target >= 0) & (previous >= 0) & (ref >= image_offset) & (source < current)
    return torch.where(valid, ref, torch.full_like(ref, -1))


def letter_places(ids: torch.Tensor, is_letter: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """For every position of ids [B, T]: the place 0..LETTER_PLACES-1 of a letter in its run of
    letters, or -1 (not a letter, or too far into a run).

    `is_letter` [B, T] marks letters: capital-letter text tokens (a word spelled S A L E) and the
    image codes of lettering (the glyph halves of a sign). `index` is image_code_index(ids): a run
    of letter codes never continues from one row of the picture into the next. Each place depends
    only on the ids up to it, so a decoding step computes it like a whole sequence.
    """
    t = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    last_break = torch.where(is_letter, torch.full_like(t, -1), t).cummax(dim=-1).values
    row_start = torch.where(index >= 0, t - index % IMAGE_SIDE - 1, torch.full_like(t, -1))
    place = t - torch.maximum(last_break, row_start) - 1
    return torch.where(is_letter & (place < LETTER_PLACES), place, torch.full_like(place, -1))


def centred_first_column(n_letters: torch.Tensor) -> torch.Tensor:
    """Code column of an n-letter word's first letter: centred on the grid, one code per letter
    (the lettering contract, mmgen.world.lettering.first_column; tests hold the two equal)."""
    return (IMAGE_SIDE - n_letters).div(2, rounding_mode="floor")


def word_letter_ids(ids: torch.Tensor, is_text_letter: torch.Tensor, index: torch.Tensor,
                    image_start: int) -> torch.Tensor:
    """For every position of ids [B, T] that predicts an image code: the id of the letter of the
    latest word that a sign would draw in that code's column, or -1 (no word yet, a column outside
    the word, or not a position that predicts a code).

    A word is a run of two or more capital-letter text tokens (`is_text_letter`); its letters take
    one code column each from centred_first_column(n) (`after` reads one position ahead, but only
    where a capital is, and a capital's own value is always -1). The position holding <image> predicts code
    0 and the one holding code j predicts code j + 1 (`index`: image_code_index(ids)). Each value
    depends only on the ids up to its position, so a decoding step computes it like a whole sequence.
    """
    B, T = ids.shape
    t = torch.arange(T, device=ids.device).expand_as(ids)
    before = F.pad(is_text_letter, (1, 0))[:, :T]
    after = F.pad(is_text_letter, (0, 1))[:, 1:]
    run_start = torch.where(is_text_letter & ~before, t, torch.full_like(t, -1)).cummax(dim=-1).values
    length = t - run_start + 1
    word_end = is_text_letter & ~after & (length >= 2)
    last_end = torch.where(word_end, t, torch.full_like(t, -1)).cummax(dim=-1).values
    n = length.gather(1, last_end.clamp(min=0))
    target = predicted_code_index(ids, image_start, index)
    k = target % IMAGE_SIDE - centred_first_column(n)                 # the letter's place in the word
    valid = (target >= 0) & (last_end >= 0) & (k >= 0) & (k < n)
    letter = ids.gather(1, (last_end - n + 1 + k).clamp(0, T - 1))
    return torch.where(valid, letter, torch.full_like(letter, -1))


def picture_letter_codes(ids: torch.Tensor, is_letter: torch.Tensor, index: torch.Tensor, place: torch.Tensor,
                         image_start: int) -> torch.Tensor:
    """For every position of ids [B, T] that is not a picture's (words and specials) and comes 257
    or more after the latest <image> (the picture's codes are all before it): the ids of the two
    lettering codes (top half, bottom half) of the letter its next word token would spell when
    reading that picture's sign, or -1 → [B, T, 2].

    The sign's first letter is the picture's first lettering code in raster order (its top half;
    the bottom half is the code below). A position that holds the k-th letter of a run of capitals
    (`place` k, letter_places) looks at the sign's letter k + 1 (a capital past the places, -1); any
    other position at letter 0.
    A letter past the sign's end (no lettering code there) gives -1. Each value depends only on the
    ids up to its position, so a decoding step computes it like a whole sequence.
    """
    B, T = ids.shape
    t = torch.arange(T, device=ids.device).expand_as(ids)
    none = torch.full_like(t, -1)
    start = torch.where(ids == image_start, t, none).cummax(dim=-1).values       # latest <image>
    is_glyph = is_letter & (index >= 0)                     # lettering codes, never a text capital
    glyph_at = torch.where(is_glyph, t, torch.full_like(t, T))
    # the first lettering code at or after each position: it looks ahead, but a value is only used
    # where it lies inside the latest picture, all of which is before the position (causal)
    next_glyph = glyph_at.flip(-1).cummin(dim=-1).values.flip(-1)
    first = next_glyph.gather(1, (start + 1).clamp(max=T - 1)) - start - 1      # its index in the picture
    is_word = (index < 0) & (ids != image_start)
    k = torch.where(is_letter & is_word & (place >= 0), place + 1, torch.zeros_like(place))
    top_index = first + k
    valid = ((start >= 0) & (t > start + IMAGE_TOKENS) & is_word & (first >= 0) & (first < IMAGE_TOKENS)
             & ~(is_letter & is_word & (place < 0)) & (first % IMAGE_SIDE + k < IMAGE_SIDE))
    top = (start + 1 + top_index).clamp(0, T - 1)
    bottom = (top + IMAGE_SIDE).clamp(max=T - 1)
    top_id, bottom_id = ids.gather(1, top), ids.gather(1, bottom)
    top_ok = valid & is_glyph.gather(1, top)
    bottom_ok = top_ok & (top_index + IMAGE_SIDE < IMAGE_TOKENS) & is_glyph.gather(1, bottom)
    return torch.stack([torch.where(top_ok, top_id, none), torch.where(bottom_ok, bottom_id, none)], dim=-1)


@dataclass
class LookupTables:
    """StreamEmbedding.lookup_tables: the additions as tables, for decoding."""
    positions: torch.Tensor              # [IMAGE_TOKENS + 1, dim]
    reference: torch.Tensor | None       # [vocab, dim]
    places: torch.Tensor | None = None   # [LETTER_PLACES + 1, dim]
    word_letters: torch.Tensor | None = None   # [vocab, dim]
    picture_letters: tuple[torch.Tensor, torch.Tensor] | None = None   # ([vocab, dim], [vocab, dim]): top, bottom


class StreamEmbedding(nn.Embedding):
    """Token embeddings plus, on image codes, where the code sits and what was there before.

    Positions: a learned row and column vector on every code. With RoPE alone a place in a
    picture is only implicit — to know it is in column 5 of row 9 the model has to count codes
    since <image>. Small transformers learn that slowly (the shipped one, 3000 steps on 1D
    positions alone, drew shapes in the wrong cells); a row and a column vector make "where am
    I in the grid" one lookup away (cf. the 2D position embeddings of image-token models).

    Reference (optional): the embedding of the code at the same place in the previous picture,
    through a learned matrix, added where the next code is predicted — the token-stream form of
    InstructPix2Pix's conditioning, which concatenates the source image to the one being made.
    An edit is mostly a copy of its source; without this the model has to find the same cell
    256+ tokens back by content, and at 3000 steps it had not learned to (an edit's picture
    was nearly as likely given another picture as given its source: benchmarks/conditioning.py).

    Letter places (optional): a learned vector per place 0..7 on each letter of a run — the
    capitals of a word in the words (S A L E) and the lettering codes of a picture, counted from
    the first letter of their row. Drawing the k-th letter then means finding the word's letter
    with the matching place, and reading one the matching code: a lookup by embedding instead
    of arithmetic on RoPE distances (column − first column, with the first column depending on
    the word's length). A 311-step sign fine-tune without them drew letters no better for the
    right word than for a scrambled one (benchmarks/conditioning.py --parts sign).

    Word letters (optional, with letter places): on each position that predicts a code, the
    embedding of the letter of the conversation's latest word that a sign would draw in that
    code's column, through a learned matrix (word_letter_ids). Signs are centred, so the k-th
    letter sits at column (16 − n) // 2 + k: with places alone the model has to find that
    arithmetic through attention, and 1,100 fine-tune steps with places (19,500 in all) still drew
    letters no better for the right word than for ROT13 (gap 0.003 nats per glyph code). With
    the letter on the code itself, drawing a glyph is a lookup of (letter, row, colours) — the
    same kind of conditioning as the reference code. The row (a sign's band) is still the model's
    to find from the words, as it finds a shape's cell.

    Picture letters (optional, with letter places): the mirror image, for reading. On each word
    position after a picture, the two lettering codes (top and bottom half) of the sign's letter
    that the next capital would spell, through a learned matrix (picture_letter_codes): reading
    becomes a lookup from a glyph's codes to its letter. With places alone the model read no
    user-given picture's word right (0 of 20).

    Every addition starts at zero, so adding them to a trained model changes nothing until
    trained. Subclasses nn.Embedding so `.weight` is still the token table (tied to the output).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, image_start: int, image_offset: int,
                 reference: bool = False, letters: list[int] | None = None, word_letters: bool = False,
                 picture_letters: bool = False, padding_idx: int | None = None):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.image_start, self.image_offset = int(image_start), int(image_offset)
        self.image_rows = nn.Parameter(torch.zeros(IMAGE_SIDE, embedding_dim))
        self.image_cols = nn.Parameter(torch.zeros(IMAGE_SIDE, embedding_dim))
        self.reference = None
        self.letter_places = None
        self.word_letters = None
        self.picture_letters = None
        self.letters: list[int] = []
        if reference:
            self.add_reference()
        if letters:
            self.add_letter_places(letters)
        if word_letters:
            self.add_word_letters()
        if picture_letters:
            self.add_picture_letters()

    def _zero_linear(self, inputs: int) -> nn.Linear:
        """A matrix from `inputs` features to the embedding, at zero: an addition that changes nothing until trained."""
        layer = nn.Linear(inputs, self.embedding_dim, bias=False, device=self.weight.device, dtype=self.weight.dtype)
        nn.init.zeros_(layer.weight)
        return layer

    def add_reference(self) -> None:
        if self.reference is None:
            self.reference = self._zero_linear(self.embedding_dim)

    def add_word_letters(self) -> None:
        if not self.letters:
            raise ValueError("word letters need letter places (the ids that are letters)")
        if self.word_letters is None:
            self.word_letters = self._zero_linear(self.embedding_dim)

    def add_picture_letters(self) -> None:
        if not self.letters:
            raise ValueError("picture letters need letter places (the ids that are letters)")
        if self.picture_letters is None:
            self.picture_letters = self._zero_linear(2 * self.embedding_dim)        # a glyph's top and bottom codes

    def add_letter_places(self, letters: list[int]) -> None:
        """Mark these ids as letters (capital text tokens, lettering codes) and give them places."""
        self.letters = sorted(set(int(i) for i in letters))
        self._letter_flags: torch.Tensor | None = None
        if self.letter_places is None:
            self.letter_places = nn.Parameter(torch.zeros(LETTER_PLACES, self.embedding_dim,
                                                          device=self.weight.device, dtype=self.weight.dtype))

    def is_letter(self, ids: torch.Tensor) -> torch.Tensor:
        """Which of ids are letters. The flag table is made on first use, on the ids' device: a
        buffer made in __init__ would be left uninitialised by from_pretrained's empty-weight load."""
        flags = self._letter_flags
        if flags is None or flags.device != ids.device:
            flags = torch.zeros(self.num_embeddings, dtype=torch.bool, device=ids.device)
            flags[torch.tensor(self.letters, dtype=torch.long, device=ids.device)] = True
            self._letter_flags = flags
        return flags[ids]

    def positions(self, index: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Row + column vectors for code indices [...] (-1: not a code → zeros) → [..., dim]."""
        i = index.clamp(min=0)
        rows, cols = self.image_rows, self.image_cols
        if dtype is not None:
            rows, cols = rows.to(dtype), cols.to(dtype)
        pos = F.embedding(i // IMAGE_SIDE, rows) + F.embedding(i % IMAGE_SIDE, cols)
        return pos * (index >= 0).unsqueeze(-1).to(pos.dtype)

    def additions(self, ids: torch.Tensor, dtype: torch.dtype, last: int | None = None,
                  tables: "LookupTables | None" = None) -> torch.Tensor:
        """What is added to the token embeddings of ids [B, T] — of its last `last` positions only
        when given (a decoding step: where a code sits depends on the ids before it).
        `tables`: lookup_tables(dtype), when the caller keeps them (the decoding engine)."""
        whole = image_code_index(ids, self.image_start, self.image_offset)
        index = whole[:, -last:] if last else whole
        out = self.positions(index, dtype) if tables is None else F.embedding(index + 1, tables.positions)
        if self.reference is not None:
            ref = reference_ids(ids, self.image_start, self.image_offset, index=whole)
            ref = ref[:, -last:] if last else ref
            out = out + self._through(self.reference, ref, dtype, tables.reference if tables is not None else None)
        if self.letter_places is not None:
            is_letter = self.is_letter(ids)
            all_places = letter_places(ids, is_letter, whole)
            place = all_places[:, -last:] if last else all_places
            table = tables.places if tables is not None else torch.cat(
                [torch.zeros_like(self.letter_places[:1]), self.letter_places]).to(dtype)
            out = out + F.embedding(place + 1, table)
        # each letter addition is zero where it does not apply: a decoding pass skips the one its
        # new positions cannot use (picture letters while drawing codes, word letters while writing)
        new_ids = ids[:, -last:] if last else ids
        at_picture = (index >= 0) | (new_ids == self.image_start)
        if self.picture_letters is not None and not at_picture.all():
            codes = picture_letter_codes(ids, is_letter, whole, all_places, self.image_start)
            codes = codes[:, -last:] if last else codes
            out = out + self._picture_letters(codes, dtype, tables)
        if self.word_letters is not None and at_picture.any():
            is_text_letter = is_letter & (ids < self.image_offset)
            letter = word_letter_ids(ids, is_text_letter, whole, self.image_start)
            letter = letter[:, -last:] if last else letter
            out = out + self._through(self.word_letters, letter, dtype,
                                      tables.word_letters if tables is not None else None)
        return out

    def _through(self, matrix: nn.Linear, ids: torch.Tensor, dtype: torch.dtype,
                 table: torch.Tensor | None) -> torch.Tensor:
        """The embeddings of ids [B, T] through `matrix` (or its precomputed `table`), zero where an id is -1."""
        if table is not None:
            added = F.embedding(ids.clamp(min=0), table)
        else:
            added = F.linear(F.embedding(ids.clamp(min=0), self.weight).to(dtype), matrix.weight.to(dtype))
        return added * (ids >= 0).unsqueeze(-1).to(dtype)

    def _picture_letters(self, codes: torch.Tensor, dtype: torch.dtype, tables: "LookupTables | None") -> torch.Tensor:
        """picture_letters applied to the two halves' embeddings; codes [B, T, 2] (-1: none → zero)."""
        present = (codes >= 0).unsqueeze(-1).to(dtype)                      # [B, T, 2, 1]
        if tables is not None:
            top, bottom = tables.picture_letters
            return (F.embedding(codes[..., 0].clamp(min=0), top) * present[..., 0, :]
                    + F.embedding(codes[..., 1].clamp(min=0), bottom) * present[..., 1, :])
        halves = F.embedding(codes.clamp(min=0), self.weight).to(dtype) * present   # [B, T, 2, dim]
        return F.linear(halves.flatten(-2), self.picture_letters.weight.to(dtype))

    @torch.no_grad()
    def lookup_tables(self, dtype: torch.dtype) -> "LookupTables":
        """The additions precomputed per value, for decoding: each pass then looks them up
        instead of recomputing them. positions[i + 1] is code index i's row + column vector
        (positions[0], for "not a code", is zero); reference[t] is reference(embedding of t).
        A decoding pass is a few rows, where every op costs ~10-20 µs on 2 CPU cores whatever
        its size, and the reference's 384 × 384 GEMM ~0.2 ms: the lookups took the additions of
        a verify pass from ~0.94-1.06 to ~0.63-0.74 ms (two runs)."""
        index = torch.arange(-1, IMAGE_TOKENS, device=self.weight.device)
        reference = None if self.reference is None else F.linear(self.weight.to(dtype), self.reference.weight.to(dtype))
        places = None if self.letter_places is None else torch.cat(
            [torch.zeros_like(self.letter_places[:1]), self.letter_places]).to(dtype)
        word_letters = None if self.word_letters is None else F.linear(self.weight.to(dtype),
                                                                       self.word_letters.weight.to(dtype))
        picture_letters = None
        if self.picture_letters is not None:
            w = self.picture_letters.weight.to(dtype)
            table = self.weight.to(dtype)
            picture_letters = (F.linear(table, w[:, :self.embedding_dim]), F.linear(table, w[:, self.embedding_dim:]))
        return LookupTables(positions=self.positions(index, dtype), reference=reference, places=places,
                            word_letters=word_letters, picture_letters=picture_letters)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # whole sequences only: a lone new token cannot know its place (engine.py tracks it)
        x = super().forward(input_ids)
        return x + self.additions(input_ids, x.dtype)


def add_image_positions(model: LlamaForCausalLM, image_start: int, image_offset: int, *,
                        reference: bool = False, letters: list[int] | None = None,
                        word_letters: bool = False, picture_letters: bool = False) -> LlamaForCausalLM:
    """Give a Llama model row/column embeddings on image codes, with `reference` the code at the
    same place in the previous picture, with `letters` (stream ids) letter places, with
    `word_letters` the word's letter on each code, with `picture_letters` the sign's letter on each
    word position after a picture; each starts at zero, so the function is unchanged."""
    emb = model.get_input_embeddings()
    if not isinstance(emb, StreamEmbedding):
        new = StreamEmbedding(emb.num_embeddings, emb.embedding_dim, image_start=image_start,
                              image_offset=image_offset, padding_idx=emb.padding_idx)
        new.to(device=emb.weight.device, dtype=emb.weight.dtype)
        new.weight = emb.weight                  # the same tensor: stays tied to the output layer
        model.set_input_embeddings(new)
        emb = new
    if reference:
        emb.add_reference()
    if letters:
        emb.add_letter_places(letters)
    if word_letters:
        emb.add_word_letters()
    if picture_letters:
        emb.add_picture_letters()
    model.config.mmgen_image_positions = {"image_start": emb.image_start, "image_offset": emb.image_offset,
                                          "reference": emb.reference is not None, "letters": emb.letters,
                                          "word_letters": emb.word_letters is not None,
                                          "picture_letters": emb.picture_letters is not None}
    return model


class MMGenForCausalLM(LlamaForCausalLM):
    """LlamaForCausalLM, with StreamEmbedding when the config asks for image positions."""

    def __init__(self, config):
        super().__init__(config)
        spec = getattr(config, "mmgen_image_positions", None)
        if spec:
            add_image_positions(self, spec["image_start"], spec["image_offset"],
                                reference=bool(spec.get("reference", False)), letters=spec.get("letters"),
                                word_letters=bool(spec.get("word_letters", False)),
                                picture_letters=bool(spec.get("picture_letters", False)))


def flash_attention_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
        return True
    except ImportError:
        return False


def attention_implementation(device: str | torch.device | None = None) -> str:
    """flash_attention_2 on CUDA when flash-attn is installed, SDPA everywhere else."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    return "flash_attention_2" if on_cuda and flash_attention_available() else "sdpa"


def llama_config(preset: str | Preset, vocab_size: int, **extra) -> LlamaConfig:
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden,
        intermediate_size=p.mlp,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=p.context,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **extra,
    )


def build_model(preset: str | Preset, vocab_size: int, *, device=None, seed: int | None = None,
                image_positions: tuple[int, int] | None = None, reference: bool = False,
                letters: list[int] | None = None, word_letters: bool = False, picture_letters: bool = False,
                **extra) -> LlamaForCausalLM:
    """A fresh model; `image_positions=(id of <image>, id of code 0)` adds StreamEmbedding
    (with `reference`, the previous picture's code at the same place too; with `letters`, letter
    places; with `word_letters`, the word's letter on each code; with `picture_letters`, the sign's
    letter on the words after a picture)."""
    if seed is not None:
        torch.manual_seed(seed)
    config = llama_config(preset, vocab_size, **extra)
    config._attn_implementation = attention_implementation(device)
    model = MMGenForCausalLM(config)
    if image_positions is not None:
        add_image_positions(model, *image_positions, reference=reference, letters=letters,
                            word_letters=word_letters, picture_letters=picture_letters)
    if device is not None:
        model.to(device)
    return model


def load_model(path: str | Path, *, device=None, dtype: torch.dtype | None = None) -> LlamaForCausalLM:
    """Our checkpoints (with or without image positions; the config says which)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no transformer checkpoint at {path} (config.json missing)")
    model = MMGenForCausalLM.from_pretrained(path, dtype=dtype or torch.float32,
                                             attn_implementation=attention_implementation(device),
                                             use_safetensors=True)
    if device is not None:
        model.to(device)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
