"""Shared fixtures: the shipped text tokenizer, a stream, a tiny random transformer, the shipped model."""
from __future__ import annotations

import pytest
import torch

from mmgen.stream import Stream
from mmgen.text import TextTokenizer

TINY_CODEBOOK = 64        # small codebook for tiny-model tests


@pytest.fixture(scope="session")
def text_tokenizer() -> TextTokenizer:
    return TextTokenizer.from_pretrained()


@pytest.fixture(scope="session")
def tiny_stream(text_tokenizer) -> Stream:
    return Stream(text_tokenizer, TINY_CODEBOOK)


def tiny_transformer(stream: Stream, seed: int = 0, image_positions: bool = True):
    """A tiny random transformer; with image positions (and reference codes), those random too (a
    trained model's are not zero, and zeros would hide any mistake in where a code is placed)."""
    from mmgen.model import build_model
    letters = stream.letter_ids(range(0, TINY_CODEBOOK, 3)) if image_positions else None
    lm = build_model("tiny", stream.vocab_size, seed=seed, reference=image_positions, letters=letters,
                     word_letters=image_positions,
                     picture_letters=image_positions, image_positions=(stream.image_start, stream.image_offset) if image_positions else None)
    if image_positions:
        emb = lm.get_input_embeddings()
        with torch.no_grad():
            emb.image_rows.normal_(0, 0.05)
            emb.image_cols.normal_(0, 0.05)
            emb.reference.weight.normal_(0, 0.3)
            emb.letter_places.normal_(0, 0.3)
            emb.word_letters.weight.normal_(0, 0.3)
            emb.picture_letters.weight.normal_(0, 0.3)
    return lm


@pytest.fixture(scope="session")
def tiny_lm(tiny_stream):
    torch.set_num_threads(1)
    return tiny_transformer(tiny_stream).eval()


@pytest.fixture(scope="session")
def tiny_plain_lm(tiny_stream):
    """Without image positions, as checkpoints trained before them."""
    torch.set_num_threads(1)
    return tiny_transformer(tiny_stream, image_positions=False).eval()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, text_tokenizer):
    """A checkpoints folder with a tiny random image tokenizer and transformer: the mechanics of
    loading, chatting and saving, without the cost (or the meaning) of the shipped weights."""
    from mmgen.vq import PRESETS, VQTokenizer
    root = tmp_path_factory.mktemp("checkpoints")
    torch.set_num_threads(1)          # tiny models: threads only add contention
    torch.manual_seed(0)
    vq = VQTokenizer(PRESETS["tiny"])
    vq.save_pretrained(root / "vq")
    stream = Stream(text_tokenizer, vq.codebook_size)
    lm = tiny_transformer(stream)
    lm.config.mmgen_preset = "tiny"
    lm.save_pretrained(root / "lm")
    text_tokenizer.save_pretrained(root / "lm")
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoints):
    import mmgen
    return mmgen.load(tiny_checkpoints, dtype=torch.float32)


@pytest.fixture(scope="session")
def _shipped_once():
    import mmgen
    from mmgen.pipeline import DEFAULT_CHECKPOINTS
    if not (DEFAULT_CHECKPOINTS / "lm" / "model.safetensors").is_file():
        pytest.skip("no shipped transformer yet")
    return mmgen.load()


@pytest.fixture
def shipped_model(_shipped_once):
    """The shipped checkpoints, loaded once for every test that uses them (pipeline, server, page), on
    2 threads whatever a tiny-model test set before; skipped where no transformer is shipped."""
    torch.set_num_threads(2)
    return _shipped_once
