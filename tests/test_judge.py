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
from mmgen.world.lettering import CELL_H, CODE_PX, LETTER_ROW
from mmgen.world.render import render
from mmgen.world.scene import (BACKGROUND_COLORS, BANDS, CELLS, LEGIBLE_PAIRS, OBJECT_COLORS, SHAPES, SIZES, Obj,
                               Scene, Sign, cell_center, eval_seed, place, sample_scene, validate)

N_CLEAN = 100
N_DEGRADED = 40


def _scenes(n: int, start: int = 0, signs_only: bool = False, no_signs: bool = False) -> list[Scene]:
    out, i = [], start
    while len(out) < n:
        s = sample_scene(eval_seed(i))
        i += 1
        if (s.sign is not None or not signs_only) and (s.sign is None or not no_signs):
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


# --- the sign's lettering ---------------------------------------------------------------
ALPHABET_WORDS = ("ABCDEFGH", "IJKLMNOP", "QRSTUVWX", "YZ")   # every letter once; the longest and shortest words


def _alphabet_signs(color: str, surface: str) -> list[Scene]:
    """Valid scenes holding only a sign, `color` on `surface`, in every band, one per ALPHABET_WORD:
    bare where the surface is a background colour, on a plaque where it is an object colour
    (white and black are both), the plaque on a background picked by a seeded draw."""
    settings = []
    if surface in BACKGROUND_COLORS:
        settings.append((surface, None))
    if surface in OBJECT_COLORS:
        rng = random.Random(LEGIBLE_PAIRS.index((color, surface)))
        settings.append((rng.choice(sorted(b for b in BACKGROUND_COLORS if b != surface)), surface))
    scenes = []
    for background, plaque in settings:
        for band in BANDS:
            for word in ALPHABET_WORDS:
                s = Scene(background=background, sign=Sign(word, color, plaque, band))
                validate(s)
                scenes.append(s)
    return scenes


@pytest.mark.parametrize("color,surface", LEGIBLE_PAIRS)
def test_every_letter_reads_in_every_legible_pair_and_band(color, surface):
    for s in _alphabet_signs(color, surface):
        found = judge(render(s))
        assert found == s.to_dict(), (s.to_dict(), found)


@pytest.mark.parametrize("color,surface", LEGIBLE_PAIRS)
def test_every_letter_reads_blurred_noisy_and_jpegd(color, surface):
    # each word in one band (cycling through them), all three degradations at once, seeded noise
    scenes = [s for s in _alphabet_signs(color, surface)
              if BANDS.index(s.sign.band) == ALPHABET_WORDS.index(s.sign.word) % len(BANDS)]
    for i, s in enumerate(scenes):
        img = jpeg(noise(blur(render(s), 0.7), 8 / 255, rng=i), 60)
        found = judge(img)
        assert found["sign"] == s.sign.to_dict(), (s.to_dict(), found)


def _shapes_on_the_letter_rows() -> list[Scene]:
    """Sign-less scenes with one shape centred on a band's letter rows at the canvas centre, where a
    word of any length would be: each shape, size and band; colours and backgrounds seeded."""
    rng = random.Random(0)
    scenes = []
    for shape in SHAPES:
        for size in SIZES:
            for band, cell in zip(BANDS, ("top", "center", "bottom")):
                background = rng.choice(sorted(BACKGROUND_COLORS))
                color = rng.choice(sorted(c for c in OBJECT_COLORS if c != background))
                rows_centre = LETTER_ROW[band] * CODE_PX + CELL_H / 2
                obj = Obj(shape, color, size, cell, offset=(0.0, rows_centre - cell_center(cell)[1]))
                s = Scene(background=background, objects=(obj,))
                validate(s)
                scenes.append(s)
    return scenes


@pytest.mark.parametrize("name,degrade", [
    ("clean", lambda img, i: img),
    ("all three", lambda img, i: jpeg(noise(blur(img, 0.7), 8 / 255, rng=i), 60)),
])
def test_pictures_without_a_sign_are_read_without_one(name, degrade):
    shapes_where_words_go = _shapes_on_the_letter_rows()
    scenes = shapes_where_words_go + _scenes(60, start=700, no_signs=True)
    scenes += [Scene(background=b) for b in BACKGROUND_COLORS]
    for i, s in enumerate(scenes):
        found = judge(degrade(render(s), i))
        assert found["sign"] is None, (name, s.to_dict(), found)
        if s in shapes_where_words_go:   # and the shape is read as the shape it is
            assert compare(s.to_dict(), found)["exact"], (name, s.to_dict(), found)


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
