"""`mmgen.load()` on the shipped checkpoints, from the repository, on CPU."""
from __future__ import annotations

import pytest
import torch

import mmgen
from mmgen.pipeline import DEFAULT_CHECKPOINTS
from mmgen.stream import IMAGE_TOKENS

pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINTS / "lm" / "model.safetensors").is_file(),
                                reason="no shipped transformer yet")


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    return mmgen.load()


def test_load_draw_and_answer(shipped):
    assert shipped.device.type == "cpu"
    chat = shipped.chat(seed=0)
    reply = chat.send("draw a red circle at the top left", picture="always")
    assert reply.image.size == (128, 128) and len(reply.codes) == IMAGE_TOKENS
    answer = chat.send("what colour is the circle?", picture="never")
    assert answer.image is None and isinstance(answer.text, str)


def test_mismatched_checkpoints_are_refused(tmp_path, tiny_checkpoints):
    import shutil
    shutil.copytree(DEFAULT_CHECKPOINTS / "lm", tmp_path / "lm")
    shutil.copytree(tiny_checkpoints / "vq", tmp_path / "vq")       # a different codebook size
    with pytest.raises(ValueError, match="do not belong together"):
        mmgen.load(tmp_path)
