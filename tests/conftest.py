"""Shared fixtures: the shipped text tokenizer, a stream, a tiny random transformer."""
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


@pytest.fixture(scope="session")
def tiny_lm(tiny_stream):
    from mmgen.model import build_model
    torch.set_num_threads(1)
    return build_model("tiny", tiny_stream.vocab_size, seed=0).eval()
