"""The judge reads renders back into scenes; compare() flags exactly what differs.

    /work/venv/bin/pytest tests/test_judge.py
"""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mmgen.eval import compare, judge
from mmgen.eval.degrade import blur, jpeg, noise
from mmgen.world.render import render
from mmgen.world.scene import (CELLS, OBJECT_COLORS, Scene, eval_seed, place, sample_scene)

N_CLEAN = 100
N_DEGRADED = 40


def _scenes(n: int, start: int = 0, signs_only: bool = False) -> list[Scene]:
    out, i = [], start
    while len(out) < n:
        s = sample_scene(eval_seed(i))
        i += 1
        if s.sign is not None or not signs_only:
            out.append(s)
    return out


def _misses(scenes, degrade=lambda img, i: img) -> list[tuple[dict, dict]]:
    misses = []
    for i, s in enumerate(scenes):
        found = judge(degrade(render(s), i))
        if not compare(s.to_dict(), found)["exact"]:
            misses.append((s.to_dict(), found))
    return misses


def test_clean_renders_read_exactly():
    misses = _misses(_scenes(N_CLEAN))
    assert len(misses) <= 1, misses[:3]


def test_clean_signs_read_exactly():
    misses = _misses(_scenes(30, start=N_CLEAN, signs_only=True))
    assert not misses, misses[:3]


@pytest.mark.parametrize("name,degrade", [
    ("blur", lambda img, i: blur(img, 0.7)),
    ("noise", lambda img, i: noise(img, 8 / 255, rng=i)),
    ("jpeg", lambda img, i: jpeg(img, 60)),
])
def test_degraded_renders_mostly_read_exactly(name, degrade):
    scenes = _scenes(N_DEGRADED, start=500)
    misses = _misses(scenes, degrade)
    assert len(misses) <= 0.05 * len(scenes), (name, misses[:3])


def test_input_forms_agree():
    s = _scene_with(3, sign=True)
    img = render(s)
    found = judge(img)
    assert compare(s.to_dict(), found)["exact"]
    assert [o["cell"] for o in found["objects"]] == sorted((o.cell for o in s.objects), key=CELLS.index)
    assert judge(np.asarray(img)) == found
    assert judge(img.convert("RGBA")) == found
    assert judge(img.resize((256, 256), Image.Resampling.NEAREST)) == found


def test_blank_canvas_has_nothing():
    assert judge(Image.new("RGB", (128, 128), OBJECT_COLORS["white"])) == {
        "background": "white", "objects": [], "sign": None}


def test_judge_is_deterministic():
    img = noise(render(sample_scene(eval_seed(3))), 8 / 255, rng=1)
    assert judge(img) == judge(img)


@pytest.mark.parametrize("bad", [None, "picture.png", [1, 2, 3], 3.5])
def test_non_images_raise_type_error(bad):
    with pytest.raises(TypeError, match="PIL image"):
        judge(bad)


@pytest.mark.parametrize("bad", [np.zeros((128, 128)), np.zeros((128, 128, 3), np.float32),
                                 np.zeros((128, 128, 4), np.uint8)])
def test_bad_arrays_raise_value_error(bad):
    with pytest.raises(ValueError, match="uint8"):
        judge(bad)


# --- compare ---------------------------------------------------------------------------
def _scene_with(n_objects: int, sign: bool) -> Scene:
    for i in range(10_000):
        s = sample_scene(eval_seed(i))
        if len(s.objects) == n_objects and (s.sign is not None) == sign:
            return s
    raise AssertionError("no such scene")


def test_compare_identical_is_exact():
    d = _scene_with(3, sign=True).to_dict()
    r = compare(d, d)
    assert r["exact"] and r["background"] and r["extra_objects"] == 0 and not r["extra_sign"]
    assert all(all(o[a] for a in ("found", "shape", "color", "size")) for o in r["objects"])
    assert all(r["sign"].values())


def test_compare_flags_a_recoloured_object_end_to_end():
    s = _scene_with(3, sign=False)
    o = s.objects[1]
    new_color = next(c for c in OBJECT_COLORS if c not in (o.color, s.background))
    edited = s.with_objects([replace(o, color=new_color) if x is o else x for x in s.objects])
    r = compare(s.to_dict(), judge(render(edited)))
    assert not r["exact"]
    assert [x["color"] for x in r["objects"]] == [True, False, True]
    assert all(x["shape"] and x["size"] and x["found"] for x in r["objects"])
    assert r["extra_objects"] == 0


def test_compare_flags_a_moved_object_end_to_end():
    s = _scene_with(2, sign=False)
    free = [c for c in CELLS if c not in {o.cell for o in s.objects}]
    moved_from = s.objects[0].cell
    moved = place(s.with_objects([replace(s.objects[0], cell=free[0])] + list(s.objects[1:])),
                  random.Random(0), keep=(1,))
    assert moved is not None
    r = compare(s.to_dict(), judge(render(moved)))
    assert not r["exact"]
    assert r["objects"][0] == {"cell": moved_from, "found": False, "shape": False, "color": False, "size": False}
    assert r["objects"][1]["found"] and r["objects"][1]["shape"]
    assert r["extra_objects"] == 1


def test_compare_flags_a_wrong_word_end_to_end():
    s = _scene_with(1, sign=True)
    word = "ZZ" if s.sign.word != "ZZ" else "QQ"
    r = compare(s.to_dict(), judge(render(replace(s, sign=replace(s.sign, word=word)))))
    assert not r["exact"]
    assert r["sign"] == {"present": True, "word": False, "color": True, "plaque": True, "band": True}
    assert all(o["found"] for o in r["objects"])


def test_compare_flags_missing_and_extra_objects():
    d = _scene_with(3, sign=False).to_dict()
    fewer = {**d, "objects": d["objects"][:2]}
    r = compare(d, fewer)
    assert not r["exact"] and [o["found"] for o in r["objects"]] == [True, True, False]
    assert r["extra_objects"] == 0
    r = compare(fewer, d)
    assert not r["exact"] and r["extra_objects"] == 1 and all(o["found"] for o in r["objects"])
    # two objects read in one cell: the second is extra
    dup = {**d, "objects": d["objects"] + [dict(d["objects"][0], shape="star")]}
    assert compare(d, dup)["extra_objects"] == 1


def test_compare_flags_sign_and_background_changes():
    d = _scene_with(1, sign=True).to_dict()
    assert compare(d, {**d, "sign": None})["sign"] == {
        "present": False, "word": False, "color": False, "plaque": False, "band": False}
    no_sign = {**d, "sign": None}
    r = compare(no_sign, d)
    assert r["extra_sign"] and not r["exact"] and r["sign"] is None
    other_bg = "black" if d["background"] != "black" else "white"
    r = compare(d, {**d, "background": other_bg})
    assert not r["exact"] and not r["background"] and r["sign"]["word"]


def test_compare_rejects_non_scenes():
    with pytest.raises(TypeError):
        compare({"objects": []}, "not a scene")


# --- degrade ---------------------------------------------------------------------------
def test_degradations_are_deterministic_pil_rgb():
    img = render(sample_scene(eval_seed(1)))
    for out in (blur(img, 0.7), noise(img, 8 / 255, rng=3), jpeg(img, 60)):
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == img.size
        assert out.tobytes() != img.tobytes()
    assert noise(img, 8 / 255, rng=3).tobytes() == noise(img, 8 / 255, rng=np.random.default_rng(3)).tobytes()
    assert noise(img, 8 / 255, rng=3).tobytes() != noise(img, 8 / 255, rng=4).tobytes()
    assert jpeg(img, 60).tobytes() == jpeg(img, 60).tobytes()
    assert blur(img, 0).tobytes() == img.tobytes()
    with pytest.raises(TypeError):
        blur(np.asarray(img), 1.0)
