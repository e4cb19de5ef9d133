"""Cheap previews: the per-code patch table (mmgen train previews) and the canvas that pastes one
row at a time (previews.PreviewCanvas); without a table, the decoder previews as before."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mmgen.session import PREVIEW_GREY, PreviewCanvas, preview_image
from mmgen.train import preview_table
from mmgen.vq import PREVIEW_FILE, VQTokenizer

SIDE = 16


def random_table(vq, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (vq.codebook_size, 8, 8, 3), generator=g, dtype=torch.uint8)


def table_picture(table, codes, rows) -> np.ndarray:
    """What the first `rows` rows of `codes` look like in the table, grey below."""
    expected = np.empty((128, 128, 3), np.uint8)
    expected[:] = PREVIEW_GREY
    ids = torch.tensor(codes[:rows * SIDE]).view(1, rows, SIDE)
    if rows:
        grid = table[ids.reshape(-1)].reshape(rows, SIDE, 8, 8, 3).permute(0, 2, 1, 3, 4)
        expected[:rows * 8] = grid.reshape(rows * 8, 128, 3).numpy()
    return expected


@pytest.fixture
def tabled(tiny_model, monkeypatch):
    """The tiny model with a random preview table (removed again after the test)."""
    monkeypatch.setattr(tiny_model.vq, "preview_patches", random_table(tiny_model.vq))
    return tiny_model


def stream_events(model, seed=1):
    events = list(model.chat(seed=seed).stream("draw a star", picture="always"))
    previews = [e for e in events if e.kind == "preview"]
    final = next(e for e in events if e.kind == "image").image
    return previews, final


def test_previews_paste_table_rows_above_grey_and_end_with_the_real_decode(tabled):
    previews, final = stream_events(tabled)
    assert [p.rows for p in previews] == list(range(1, 17))
    codes = next(e.reply for e in tabled.chat(seed=1).stream("draw a star", picture="always")
                 if e.kind == "done").codes
    table = tabled.vq.preview_patches
    for p in previews[:-1]:
        assert (np.asarray(p.image) == table_picture(table, codes, p.rows)).all(), p.rows
    decoded = tabled.vq.decode(torch.tensor(codes).view(1, SIDE, SIDE))[0]
    assert previews[-1].image.tobytes() == final.tobytes() == decoded.tobytes()


def test_each_preview_is_the_previous_plus_a_row(tabled):
    previews, _ = stream_events(tabled, seed=4)
    shown = [np.asarray(p.image) for p in previews[:-1]]
    for k in range(len(shown) - 1):
        top = 8 * previews[k].rows
        assert (shown[k + 1][:top] == shown[k][:top]).all()             # drawn rows never change
        assert (shown[k + 1][top + 8:] == 128).all()                    # one new row, grey below


def test_a_streamed_picture_is_decoded_once(tabled, monkeypatch):
    calls = []
    real = tabled.vq.decode_tensor
    monkeypatch.setattr(tabled.vq, "decode_tensor", lambda ids, **kw: calls.append(tuple(ids.shape)) or real(ids, **kw))
    stream_events(tabled, seed=2)
    assert calls == [(1, SIDE, SIDE)]            # the last preview's decode is the final picture's


def test_canvas_starts_over_for_another_picture(tabled):
    vq = tabled.vq
    canvas = PreviewCanvas(vq)
    a, b = list(range(48)), list(range(10, 58))
    canvas.image(a[:32])
    assert (np.asarray(canvas.image(b)) == table_picture(vq.preview_patches, b, 3)).all()
    assert (np.asarray(preview_image(vq, a[:37])) == table_picture(vq.preview_patches, a, 2)).all()


def test_without_a_table_previews_are_decoded(tiny_model):
    vq = tiny_model.vq
    assert vq.preview_patches is None
    previews, final = stream_events(tiny_model)
    codes = next(e.reply for e in tiny_model.chat(seed=1).stream("draw a star", picture="always")
                 if e.kind == "done").codes
    assert previews[-1].image.tobytes() == final.tobytes()
    three = np.asarray(previews[2].image)
    assert (three[24:] == 128).all()
    # decoded rows, not a table's: the same as a one-off decoder preview
    assert three.tobytes() == preview_image(vq, list(codes[:48])).tobytes()


def test_table_round_trips_and_is_checked(tiny_checkpoints, tmp_path):
    vq = VQTokenizer.from_pretrained(tiny_checkpoints / "vq")
    table = random_table(vq, seed=3)
    vq.set_preview_patches(table)
    vq.save_pretrained(tmp_path / "vq")
    assert torch.equal(VQTokenizer.from_pretrained(tmp_path / "vq").preview_patches, table)
    with pytest.raises(ValueError):
        vq.set_preview_patches(table[:-1])
    with pytest.raises(ValueError):
        vq.set_preview_patches(table.float())


def test_train_previews_writes_a_table_the_tokenizer_loads(tiny_checkpoints, tmp_path):
    folder = tmp_path / "vq"
    shutil.copytree(tiny_checkpoints / "vq", folder)
    assert preview_table.main(["--vq", str(folder), "--scenes", "3", "--check", "2"]) == 0
    assert (folder / PREVIEW_FILE).is_file()
    vq = VQTokenizer.from_pretrained(folder)
    assert vq.preview_patches.shape == (vq.codebook_size, 8, 8, 3) and vq.preview_patches.dtype == torch.uint8
