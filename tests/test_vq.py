"""Fast tests of the image tokenizer (mmgen/vq.py) and its trainer's checkpoint state.

Most use the tiny randomly initialised preset; the round-trip test uses the shipped
checkpoints/vq when it exists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.vq import GRID, IMAGE_SIZE, PRESETS, VQConfig, VQTokenizer, emulated_bf16, images_to_tensor
from mmgen.world import render, sample_scene
from mmgen.world.scene import eval_seed

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "vq"


@pytest.fixture(scope="module")
def tiny() -> VQTokenizer:
    torch.manual_seed(0)
    return VQTokenizer(VQConfig.from_dict(PRESETS["tiny"].to_dict()))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [render(sample_scene(eval_seed(i))) for i in range(4)]


def test_shapes_and_dtypes(tiny, images):
    ids = tiny.encode(images[0])
    assert ids.shape == (1, GRID, GRID) and ids.dtype == torch.long
    ids = tiny.encode(images)
    assert ids.shape == (4, GRID, GRID)
    assert 0 <= int(ids.min()) and int(ids.max()) < tiny.codebook_size
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(tiny.encode(x), ids)            # tensor and PIL paths agree
    out = tiny.decode(ids)
    assert len(out) == 4 and all(o.size == (IMAGE_SIZE, IMAGE_SIZE) and o.mode == "RGB" for o in out)
    px = tiny.decode_tensor(ids)
    assert px.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE) and px.dtype == torch.float32
    assert 0 <= px.min() and px.max() <= 1
    assert tiny.decode(ids[0])[0].size == (IMAGE_SIZE, IMAGE_SIZE)     # a single [16, 16] grid
    assert tiny.codebook_size == 1000


def test_training_forward_quantizes_in_fp32(tiny, images):
    x = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = tiny.encoder(x * 2 - 1)
        q, ids, aux = tiny.quantize(z)
        y, ids2, _ = tiny(x)
    assert q.dtype == torch.float32 and ids.shape == (2, GRID, GRID)
    assert y.shape == x.shape and torch.equal(ids, ids2)


def test_vq_quantizer_variant(images):
    torch.manual_seed(0)
    cfg = VQConfig.from_dict({**PRESETS["tiny"].to_dict(), "quantizer": "vq", "vq_codebook_size": 1024,
                              "vq_codebook_dim": 8})
    m = VQTokenizer(cfg).train()
    y, ids, aux = m(torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE))      # first training pass runs k-means init
    assert ids.shape == (2, GRID, GRID) and torch.isfinite(aux)
    m.eval()
    ids = m.encode(images)
    assert ids.shape == (4, GRID, GRID) and int(ids.max()) < 1024
    assert len(m.decode(ids)) == 4
    # the inference lookup (argmin of squared distance) picks the library's codes. This tiny k-means init
    # saw fewer vectors than codes, so its codebook holds near-duplicates whose ties either lookup may
    # break; spread codes make the nearest one unambiguous
    with torch.inference_mode():
        m.quantizer._codebook.embed.copy_(torch.randn_like(m.quantizer._codebook.embed))
        z = m.encoder(torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1)
        ours, theirs = m.nearest_codes(z, chunk=100), m.quantize(z)[1]
        assert len(ours.unique()) > 50
        assert torch.equal(ours, theirs)


def test_deterministic(tiny, images):
    a, b = tiny.encode(images), tiny.encode(images)
    assert torch.equal(a, b)
    assert [np.asarray(i).tobytes() for i in tiny.decode(a)] == [np.asarray(i).tobytes() for i in tiny.decode(a)]
    # a batch and its images one at a time: bf16 kernels depend on the batch size, so a value on a
    # rounding boundary may flip; nearly all ids agree
    singles = torch.cat([tiny.encode(im) for im in images])
    assert (singles == a).float().mean().item() >= 0.98


def test_save_load_round_trip(tiny, images, tmp_path):
    tiny.save_pretrained(tmp_path / "f32", dtype=torch.float32, training={"step": 3})
    back = VQTokenizer.from_pretrained(tmp_path / "f32")
    assert sorted(os.listdir(tmp_path / "f32")) == ["config.json", "model.safetensors"]   # no temp files left
    assert back.config.training == {"step": 3} and back.codebook_size == tiny.codebook_size
    ids = tiny.encode(images)
    assert torch.equal(back.encode(images), ids)
    assert torch.equal(back.decode_tensor(ids), tiny.decode_tensor(ids))
    # bf16 weights: loading gives the bf16-rounded weights, and saving again changes nothing
    tiny.save_pretrained(tmp_path / "bf16")
    b1 = VQTokenizer.from_pretrained(tmp_path / "bf16")
    for k, v in tiny.state_dict().items():
        if v.is_floating_point() and not k.startswith("quantizer."):
            assert torch.equal(b1.state_dict()[k], v.to(torch.bfloat16).float())
    b1.save_pretrained(tmp_path / "bf16b")
    b2 = VQTokenizer.from_pretrained(tmp_path / "bf16b")
    assert torch.equal(b2.decode_tensor(ids), b1.decode_tensor(ids))
    cfg = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert cfg["codebook_size"] == 1000 and cfg["quantizer"] == "fsq"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        VQTokenizer.from_pretrained(tmp_path)


def test_other_sizes_and_modes_are_converted(tiny, images):
    img = images[0]
    for other in (img.resize((64, 64)), img.resize((200, 100)), img.convert("L"), img.convert("RGBA"),
                  img.convert("P"), img.convert("CMYK")):
        assert tiny.encode(other).shape == (1, GRID, GRID)
    x = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert tiny.encode(x[:, :1]).shape == (1, GRID, GRID)                       # greyscale tensor
    assert tiny.encode(torch.cat([x, torch.ones(1, 1, IMAGE_SIZE, IMAGE_SIZE)], 1)).shape == (1, GRID, GRID)
    assert tiny.encode(torch.rand(2, 3, 96, 160)).shape == (2, GRID, GRID)     # resized
    assert tiny.encode(x[0]).shape == (1, GRID, GRID)                            # [3, H, W]
    assert torch.equal(tiny.encode((x * 255).round().to(torch.uint8)), tiny.encode((x * 255).round() / 255))
    # an opaque RGBA image encodes like its RGB
    assert torch.equal(tiny.encode(img.convert("RGBA")), tiny.encode(img))


@pytest.mark.parametrize("bad, error", [
    ("picture.png", TypeError),
    (None, TypeError),
    (42, TypeError),
    (np.zeros((128, 128, 3), dtype=np.uint8), TypeError),
    ([], ValueError),
    (["not an image"], TypeError),
    (torch.rand(2, 5, 128, 128), ValueError),             # 5 channels
    (torch.rand(128), ValueError),                         # not an image shape
    (torch.rand(1, 1, 3, 128, 128), ValueError),
    (torch.rand(1, 3, 128, 128) * 255, ValueError),        # floats outside [0, 1]
    (torch.full((1, 3, 128, 128), float("nan")), ValueError),
    (torch.zeros(1, 3, 128, 128, dtype=torch.long), TypeError),
    (torch.zeros(0, 3, 128, 128), ValueError),
])
def test_bad_images_are_refused(tiny, bad, error):
    with pytest.raises(error):
        tiny.encode(bad)


@pytest.mark.parametrize("bad, error", [
    (torch.full((1, GRID, GRID), 1000), ValueError),        # == codebook_size
    (torch.full((1, GRID, GRID), -1), ValueError),
    (torch.zeros(1, GRID, GRID, dtype=torch.float32), TypeError),
    (torch.zeros(1, 8, 8, dtype=torch.long), ValueError),
    (torch.zeros(2, 3, GRID, GRID, dtype=torch.long), ValueError),
    ("ids", TypeError),
    (None, TypeError),
])
def test_bad_ids_are_refused(tiny, bad, error):
    with pytest.raises(error):
        tiny.decode(bad)


def test_ids_in_other_layouts(tiny):
    ids = torch.randint(0, tiny.codebook_size, (2, GRID * GRID))
    assert len(tiny.decode(ids)) == 2                       # [B, 256]
    assert len(tiny.decode(ids[0].tolist())) == 1           # a flat python list of 256
    assert len(tiny.decode(ids.reshape(2, GRID, GRID).numpy())) == 2


def test_optimizer_state_round_trip_without_pickle(tiny):
    from mmgen.train.pixel_trainer import optimizer_from_safetensors, optimizer_to_safetensors
    model = VQTokenizer(VQConfig.from_dict(PRESETS["tiny"].to_dict())).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    y, _, _ = model(torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE))
    y.mean().backward()
    opt.step()
    tensors, meta = optimizer_to_safetensors(opt)
    meta = json.loads(json.dumps(meta))                     # must survive JSON
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer_from_safetensors(opt2, tensors, meta)
    a, b = opt.state_dict(), opt2.state_dict()
    for pid in a["state"]:
        for k, v in a["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][pid][k]))


def test_train_and_resume(tmp_path):
    from mmgen.train.vq import main
    out = tmp_path / "vq"
    common = ["--out", str(out), "--preset", "tiny", "--batch-size", "2", "--no-progress", "--save-every", "100"]
    assert main(common + ["--steps", "2"]) == 0
    state = json.loads((out / "trainer" / "state.json").read_text())
    assert state["step"] == 2 and state["images_seen"] == 4
    assert main(common + ["--steps", "3", "--resume"]) == 0
    state = json.loads((out / "trainer" / "state.json").read_text())
    assert state["step"] == 3 and state["images_seen"] == 6
    cfg = json.loads((out / "config.json").read_text())
    assert {"step", "images_seen", "wall_seconds"} <= set(cfg["training"])
    VQTokenizer.from_pretrained(out)


def test_local_encoder_codes_depend_only_on_their_own_patch():
    """Change every pixel outside one 8 × 8 patch: that patch's code stays; so does the code of
    every patch whose pixels were left alone when others change."""
    cfg = VQConfig.from_dict({**PRESETS["tiny"].to_dict(), "encoder": "local"})
    tok = VQTokenizer(cfg)
    torch.manual_seed(0)
    for p in tok.parameters():     # random weights everywhere (zero-initialised branches too)
        torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    y = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    y[..., 40:48, 72:80] = x[..., 40:48, 72:80]           # patch (row 5, col 9) kept
    a, b = tok.encode(x), tok.encode(y)
    assert a[0, 5, 9] == b[0, 5, 9]
    assert (a != b).float().mean() > 0.2                  # the test can fail: other codes do change
    z = x.clone()
    z[..., :16, :16] = 1 - z[..., :16, :16]              # change the top-left 2 × 2 patches only
    c = tok.encode(z)
    outside = torch.ones(GRID, GRID, dtype=torch.bool)
    outside[:2, :2] = False
    assert torch.equal(a[0][outside], c[0][outside])
    # the conv encoder does not have the property (which is why the local one exists)
    conv = VQTokenizer(VQConfig.from_dict(PRESETS["tiny"].to_dict()))
    for p in conv.parameters():
        torch.nn.init.normal_(p, std=0.5)
    assert not torch.equal(conv.encode(x)[0][outside], conv.encode(z)[0][outside])


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown encoder"):
        VQTokenizer(VQConfig.from_dict({**PRESETS["tiny"].to_dict(), "encoder": "vit"}))


def test_train_encoder_against_a_frozen_decoder(tmp_path):
    """--decoder-from --freeze-decoder: the donor's decoder and codebook come over unchanged and stay so;
    only the (new, local) encoder learns."""
    import argparse
    from safetensors.torch import load_file
    from mmgen.train.vq import add_arguments, build_config, main

    def parse(argv):
        p = argparse.ArgumentParser()
        add_arguments(p)
        return p.parse_args(argv)
    donor = tmp_path / "donor"
    untrained = ["--preset", "tiny", "--quantizer", "vq", "--vq-codebook-size", "64", "--batch-size", "2",
                 "--no-progress", "--save-every", "100"]
    VQTokenizer(build_config(parse(untrained + ["--out", str(donor)]))).save_pretrained(donor)
    bad = ["--out", str(tmp_path / "x"), "--encoder", "local", "--steps", "1", "--no-progress", "--decoder-from"]
    assert main(bad + [str(donor)]) == 2                   # an untrained codebook is refused
    assert main(bad + [str(tmp_path / "nothing")]) == 2    # so is a missing checkpoint
    assert main(untrained + ["--out", str(donor), "--steps", "1"]) == 0
    cfg = VQTokenizer.from_pretrained(donor).config
    out = tmp_path / "vq"
    common = ["--out", str(out), "--decoder-from", str(donor), "--freeze-decoder", "--encoder", "local", "--batch-size", "2",
              "--no-progress", "--save-every", "100", "--lr", "1e-2"]
    assert main(common + ["--steps", "3"]) == 0
    assert main(common + ["--steps", "4", "--resume"]) == 0
    before, after = load_file(str(donor / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert json.loads((out / "config.json").read_text())["encoder"] == "local"
    for k, v in before.items():
        if not k.startswith("encoder."):
            assert torch.equal(v.float(), after[k].float()), k
    trainer = load_file(str(out / "trainer" / "model.safetensors"))
    fresh = VQTokenizer(VQConfig.from_dict({**cfg.to_dict(), "encoder": "local"})).state_dict()
    assert any(not torch.equal(trainer[k].float(), fresh[k].float()) for k in fresh if k.startswith("encoder."))
    # without --freeze-decoder the decoder starts from the donor's and learns
    loose = tmp_path / "loose"
    assert main(["--out", str(loose), "--decoder-from", str(donor), "--encoder", "local", "--batch-size", "2",
                 "--no-progress", "--save-every", "100", "--lr", "1e-2", "--steps", "2", "--ema", "0"]) == 0
    learnt = load_file(str(loose / "trainer" / "model.safetensors"))
    assert any(not torch.equal(before[k].float(), learnt[k].float()) for k in before if k.startswith("decoder."))
    assert main(["--out", str(tmp_path / "y"), "--freeze-decoder", "--steps", "1", "--no-progress"]) == 2


def _psnr(a, b) -> float:
    import numpy as np
    err = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-12)))


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped checkpoint yet")
def test_shipped_checkpoint_round_trip_is_stable_in_pixels():
    """Re-encoding a decoded picture gives (nearly) the same picture, whatever codes it picks."""
    tok = VQTokenizer.from_pretrained(SHIPPED)
    scenes = [sample_scene(eval_seed(i)) for i in range(12)]
    first = tok.decode(tok.encode([render(s) for s in scenes]))
    second = tok.decode(tok.encode(first))
    assert min(_psnr(a, b) for a, b in zip(first, second)) >= 30.0


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped checkpoint yet")
def test_codes_are_those_of_bf16_autocast_on_every_machine():
    """The transformer learnt codes encoded under bf16 autocast; fp32 picks a near-duplicate code at
    ~10 % of positions. Where bf16 is not native the encoder emulates it, and must match exactly.
    (The glyph table is set aside: it overrides letter patches whatever the numerics.)"""
    tok = VQTokenizer.from_pretrained(SHIPPED)
    tok.set_glyphs(None)
    imgs = [render(sample_scene(eval_seed(i))) for i in range(24)]
    autocast = tok.encode(imgs, bf16=True)
    assert torch.equal(_emulated_codes(tok, imgs), autocast)
    assert torch.equal(tok.encode(imgs), autocast)
    assert not torch.equal(tok.encode(imgs, bf16=False), autocast)   # fp32 differs (and the hooks are gone)


def _emulated_codes(tok: VQTokenizer, imgs) -> torch.Tensor:
    x = (images_to_tensor(imgs) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return tok.latent_to_ids(emulated_bf16(tok.encoder, x))


def test_emulation_rounds_fp32_weights_as_autocast_does(tiny, images):
    """A freshly initialised tokenizer's weights are not bf16 values: autocast rounds them, so must the emulation."""
    assert not all(torch.equal(p, p.bfloat16().float()) for p in tiny.encoder.parameters())
    assert torch.equal(_emulated_codes(tiny, images), tiny.encode(images, bf16=True))
    assert torch.equal(tiny.encode(images), tiny.encode(images, bf16=True))


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped checkpoint yet")
def test_encodes_from_several_threads_agree():
    from concurrent.futures import ThreadPoolExecutor
    tok = VQTokenizer.from_pretrained(SHIPPED)
    imgs = [render(sample_scene(eval_seed(i))) for i in range(8)]
    want = tok.encode(imgs, bf16=True)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(lambda _: tok.encode(imgs), range(8)):
            assert torch.equal(got, want)


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped checkpoint yet")
def test_shipped_checkpoint_round_trip():
    """Re-encoding keeps ≥ 95 % of codes: letters and one-colour patches come back exactly
    (vq.GlyphCodes); before they did, a blurred letter or plaque edge took a neighbouring code (~86 %)."""
    tok = VQTokenizer.from_pretrained(SHIPPED)
    assert 1000 <= tok.codebook_size <= 16384
    assert (SHIPPED / "model.safetensors").stat().st_size <= 20 * 2 ** 20
    # half the scenes with signs: letters are where re-encoding drifts first
    scenes, i = [], 0
    while len(scenes) < 16:
        s = sample_scene(eval_seed(i))
        i += 1
        if (s.sign is not None) == (len(scenes) % 2 == 0):
            scenes.append(s)
    ids = tok.encode([render(s) for s in scenes])
    again = tok.encode(tok.decode(ids))
    assert (again == ids).float().mean().item() >= 0.95


def test_train_the_decoder_alone_keeps_every_code(tmp_path):
    """--init-from --freeze-encoder: the shipped encoder and codebook stay bit for bit (so every
    picture keeps its codes), only the decoder learns; misuse is refused with a message."""
    import argparse
    from safetensors.torch import load_file
    from mmgen.train.vq import add_arguments, build_config, main

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = ["--preset", "tiny", "--quantizer", "vq", "--vq-codebook-size", "64", "--batch-size", "2",
            "--no-progress", "--save-every", "100"]
    donor = tmp_path / "donor"
    VQTokenizer(build_config(p.parse_args(base + ["--out", str(donor)]))).save_pretrained(donor)
    assert main(base + ["--out", str(donor), "--steps", "1"]) == 0          # a trained codebook
    out = tmp_path / "dec"
    assert main(["--out", str(out), "--init-from", str(donor), "--freeze-encoder", "--batch-size", "2",
                 "--no-progress", "--save-every", "100", "--lr", "1e-2", "--steps", "3", "--ema", "0"]) == 0
    before, after = load_file(str(donor / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        if not k.startswith("decoder."):
            assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert main(["--out", str(tmp_path / "x"), "--freeze-encoder", "--steps", "1", "--no-progress"]) == 2
    assert main(["--out", str(tmp_path / "x"), "--init-from", str(donor), "--decoder-from", str(donor),
                 "--steps", "1", "--no-progress"]) == 2
