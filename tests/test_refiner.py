"""Fast tests of the diffusion refiner (mmgen/refiner.py) and its trainer, on untrained models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.cli import main as cli
from mmgen.refiner import CORRUPTION_WEIGHTS, PRESETS, Refiner, RefinerConfig, corrupt_codes
from mmgen.vq import GRID, IMAGE_SIZE, VQTokenizer
from mmgen.vq import PRESETS as VQ_PRESETS
from mmgen.world import render, sample_scene
from mmgen.world.scene import eval_seed

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "refiner"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean().clamp_min(1e-12)))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [render(sample_scene(eval_seed(i))) for i in range(3)]


@pytest.fixture(scope="module")
def tiny() -> Refiner:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Refiner(RefinerConfig.from_dict(PRESETS["tiny"].to_dict()))


@pytest.fixture(scope="module")
def perturbed() -> Refiner:
    """A tiny refiner whose correction is not zero, so its output depends on the noise."""
    torch.manual_seed(1)
    model = Refiner(RefinerConfig.from_dict(PRESETS["tiny"].to_dict()))
    with torch.no_grad():
        model.unet.conv_out.weight.normal_(0, 0.05)
    return model


def test_shapes_and_kinds(tiny, images):
    out = tiny.refine(images[0])
    assert isinstance(out, Image.Image) and out.size == (IMAGE_SIZE, IMAGE_SIZE) and out.mode == "RGB"
    outs = tiny.refine(images, steps=1)
    assert isinstance(outs, list) and len(outs) == 3 and all(o.size == (IMAGE_SIZE, IMAGE_SIZE) for o in outs)
    x = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    y = tiny.refine(x, steps=3)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    assert tiny.refine(x[0]).shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    # the network itself works on grid-aligned crops too (training uses them)
    c = torch.rand(2, 3, 32, 32) * 2 - 1
    assert tiny(torch.randn(2, 3, 32, 32), torch.tensor([5, 900]), c).shape == (2, 3, 32, 32)
    assert tiny.timesteps(1) == [999] and tiny.timesteps(2) == [999, 499] and len(tiny.timesteps(4)) == 4


def test_untrained_refiner_is_the_identity(images):
    """The x0 prediction is conditioning + a zero-initialised correction: a clean render comes back unchanged."""
    torch.manual_seed(0)
    model = Refiner(RefinerConfig.from_dict(PRESETS["small"].to_dict()))
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    for steps in (1, 2, 4):
        assert psnr(model.refine(x, steps=steps, seed=steps), x) >= 40
    out = model.refine(images[0])
    assert np.array_equal(np.asarray(out), np.asarray(images[0]))


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="checkpoints/refiner not trained yet")
def test_shipped_refiner_leaves_clean_renders_alone(images):
    """Clean in, clean out: the shipped refiner at its shipped step count keeps a clean render ≥ 40 dB."""
    model = Refiner.from_pretrained(SHIPPED)
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    y = model.refine(x)
    for i in range(len(x)):
        assert psnr(y[i], x[i]) >= 40


def test_determinism_with_a_seed(perturbed, images):
    a = np.asarray(perturbed.refine(images[0], seed=7))
    b = np.asarray(perturbed.refine(images[0], seed=7))
    c = np.asarray(perturbed.refine(images[0], seed=8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c), "the seed drives the noise"
    assert np.array_equal(np.asarray(perturbed.refine(images[0])), np.asarray(perturbed.refine(images[0])))
    # a picture's result does not depend on what follows it in the batch: its noise is its own.
    # (Up to float rounding: on some CPUs the convolutions of a batch of 2 take another kernel than
    # those of 1, and a value on a rounding edge moves one grey level; other noise moves hundreds.)
    first = np.asarray(perturbed.refine(images[:2], seed=7)[0]).astype(int)
    assert np.abs(first - a.astype(int)).max() <= 1
    assert np.abs(c.astype(int) - a.astype(int)).max() > 10


def test_save_load_round_trip(perturbed, images, tmp_path):
    path = tmp_path / "refiner"
    perturbed.save_pretrained(path, training={"step": 3})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"], "no temp files left"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format"] == "mmgen-refiner-1" and cfg["training"] == {"step": 3}
    loaded = Refiner.from_pretrained(path)
    assert loaded.config.block_out_channels == perturbed.config.block_out_channels
    ref = perturbed.refine(images[0], seed=1)
    out = loaded.refine(images[0], seed=1)
    diff = np.abs(np.asarray(ref, dtype=np.int16) - np.asarray(out, dtype=np.int16))
    assert diff.max() <= 3, "bf16-stored weights give the same picture up to rounding"
    # saving what was loaded stores the same tensors (bf16 → fp32 → bf16 is exact)
    loaded.save_pretrained(tmp_path / "again")
    from safetensors.torch import load_file
    a, b = load_file(str(path / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="config.json"):
        Refiner.from_pretrained(tmp_path / "missing")
    (path / "config.json").write_text(json.dumps({**cfg, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        Refiner.from_pretrained(path)


def test_bad_inputs_are_refused(tiny, images):
    with pytest.raises(TypeError, match="PIL image"):
        tiny.refine("picture.png")
    with pytest.raises(ValueError, match="128"):
        tiny.refine(images[0].resize((64, 64)))
    with pytest.raises(ValueError, match="shape"):
        tiny.refine(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="empty"):
        tiny.refine([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny.refine(torch.full((1, 3, IMAGE_SIZE, IMAGE_SIZE), 3.0))
    for steps in (0, 17, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            tiny.refine(images[0], steps=steps)
    with pytest.raises(TypeError, match="seed"):
        tiny.refine(images[0], seed="a")
    with pytest.raises(ValueError, match="norm_groups"):
        RefinerConfig(block_out_channels=(12, 16), norm_groups=8)


def test_corrupt_codes():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4096, (8, GRID, GRID), generator=g)
    same = corrupt_codes(ids, 0.0, g)
    assert torch.equal(same, ids) and same is not ids
    for rate in (0.02, 0.05, 0.1, 0.2):
        bad = corrupt_codes(ids, rate, torch.Generator().manual_seed(1))
        frac = (bad != ids).float().flatten(1).mean(1)
        assert torch.allclose(frac, torch.full_like(frac, round(rate * 256) / 256))
        assert bad.dtype == ids.dtype and bad.shape == ids.shape
        assert 0 <= int(bad.min()) and int(bad.max()) < 4096
    a = corrupt_codes(ids, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(a, corrupt_codes(ids, 0.1, torch.Generator().manual_seed(5)))
    # per-picture rates, a single [16, 16] grid, a flat grid, each kind of error on its own
    per = corrupt_codes(ids[:2], [0.0, 0.5], g)
    assert torch.equal(per[0], ids[0]) and (per[1] != ids[1]).sum() == 128
    assert corrupt_codes(ids[0], 0.05, g).shape == (GRID, GRID)
    flat = torch.full((1, GRID, GRID), 7)
    assert (corrupt_codes(flat, 0.1, g, codebook_size=10) != flat).sum() == round(0.1 * 256)
    stripes = torch.arange(GRID).repeat(GRID, 1)[None]
    for kind in CORRUPTION_WEIGHTS:
        out = corrupt_codes(stripes, 0.05, g, codebook_size=GRID, weights={kind: 1.0})
        assert (out != stripes).sum() == round(0.05 * 256)
        if kind in ("swap", "shift", "borrow"):   # these only move codes the picture already has
            assert set(out.unique().tolist()) <= set(range(GRID))
    with pytest.raises(TypeError):
        corrupt_codes(ids.float(), 0.1)
    with pytest.raises(ValueError, match="shape|ids"):
        corrupt_codes(ids[:, :8], 0.1)
    with pytest.raises(ValueError, match="rates"):
        corrupt_codes(ids, 1.5)
    with pytest.raises(ValueError, match="must lie"):
        corrupt_codes(ids, 0.1, codebook_size=100)


def test_train_refiner_smoke(tmp_path):
    """`mmgen train refiner` on a tiny VQ and a tiny refiner: trains, checkpoints, loads and resumes."""
    torch.manual_seed(0)
    VQTokenizer(VQ_PRESETS["tiny"]).save_pretrained(tmp_path / "vq")
    out = tmp_path / "refiner"
    common = ["train", "refiner", "--preset", "tiny", "--vq", str(tmp_path / "vq"), "--out", str(out),
              "--batch-size", "2", "--crop", "32", "--val-scenes", "2", "--save-every", "0", "--threads", "1",
              "--warmup", "1", "--no-progress"]
    assert cli(common + ["--steps", "2"]) == 0
    cfg = json.loads((out / "config.json").read_text())      # the best checkpoint so far
    assert cfg["training"]["step"] in (1, 2) and "before" in cfg["training"]["val_psnr_5pct"]
    last = json.loads((out / "trainer" / "state.json").read_text())["last"]
    assert last["step"] == 2 and last["images_seen"] == 4 and last["vq"] == str(tmp_path / "vq")
    assert sorted(p.name for p in (out / "trainer").iterdir()) == \
        ["ema.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"]
    from safetensors.torch import load_file
    first = load_file(str(out / "trainer" / "model.safetensors"))
    first_trainer = json.loads((out / "trainer" / "state.json").read_text())
    assert cli(common + ["--steps", "4", "--resume"]) == 0
    state = json.loads((out / "trainer" / "state.json").read_text())
    assert first_trainer["step"] == 2 and state["step"] == 4 and state["images_seen"] == 8
    trained = load_file(str(out / "trainer" / "model.safetensors"))
    assert first.keys() == trained.keys()
    assert any(not torch.equal(first[k], trained[k]) for k in first), "resuming trained further"
    assert Refiner.from_pretrained(out).refine(torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)).shape == (1, 3, 128, 128)
    assert cli(["train", "refiner", "--out", str(tmp_path / "nothing"), "--vq", str(tmp_path / "vq"),
                "--resume", "--no-progress"]) == 2
    # --init-from: a new run that starts from the shipped (bf16) weights with a fresh optimizer
    tuned = tmp_path / "tuned"
    init = ["train", "refiner", "--vq", str(tmp_path / "vq"), "--out", str(tuned), "--init-from", str(out)]
    assert cli(init + common[8:] + ["--steps", "1", "--lr", "0"]) == 0
    start = {k: v.float() for k, v in load_file(str(out / "model.safetensors")).items()}
    after_zero_lr = load_file(str(tuned / "trainer" / "model.safetensors"))
    assert all(torch.equal(start[k], after_zero_lr[k]) for k in start), "lr 0 keeps the initial weights"
    assert json.loads((tuned / "trainer" / "state.json").read_text())["step"] == 1
    lineage = json.loads((tuned / "config.json").read_text())["training"]["init_from"]
    initial = json.loads((out / "config.json").read_text())["training"]
    assert lineage["checkpoint"] == str(out) and lineage["training"]["step"] == initial["step"]
    assert cli(init[:-1] + [str(tmp_path / "nothing"), "--no-progress"]) == 2
