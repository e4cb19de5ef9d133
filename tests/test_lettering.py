"""Lettering on the code grid (world/lettering.py) and the tokenizer's exact glyph codes (vq.GlyphCodes)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from mmgen.world import Scene, Sign, render, sample_scene, validate
from mmgen.world.lettering import (CELL_H, CELL_W, CODE_PX, FONT_5X7, LETTER_ROW, first_column, glyph_mask,
                                   letter_cells, letters_box, plaque_box)
from mmgen.world.scene import (ALL_COLORS, BACKGROUND_COLORS, BANDS, LEGIBLE_PAIRS, OBJECT_COLORS, WORD_MAX_LEN,
                               WORD_MIN_LEN, InvalidScene, is_legible, legible_pair)

ALPHABET = "".join(sorted(FONT_5X7))


def pair_scene(color: str, surface: str, word: str, band: str) -> Scene:
    """A valid scene showing `word` in `color` on `surface` (a plaque, or the background)."""
    if surface in BACKGROUND_COLORS and surface not in OBJECT_COLORS:
        return Scene(background=surface, sign=Sign(word=word, color=color, plaque=None, band=band))
    background = "white" if surface != "white" else "gray"
    return Scene(background=background, sign=Sign(word=word, color=color, plaque=surface, band=band))


def test_every_letter_is_distinct_and_keeps_a_gutter():
    masks = {ch: glyph_mask(ch) for ch in ALPHABET}
    assert len(masks) == 26
    flat = {m.tobytes() for m in masks.values()}
    assert len(flat) == 26                                   # no two letters alike
    for ch, m in masks.items():
        assert m.shape == (CELL_H, CELL_W)
        # a gutter right, top and bottom: letters in neighbouring cells never touch
        assert not m[:, -1].any() and not m[0].any() and not m[-1].any(), ch
        # ink in both code rows: every patch of a word holds part of its letter
        assert m[:CODE_PX].any() and m[CODE_PX:].any(), ch


def test_confusable_letters_differ_by_several_pixels():
    for a, b in ("CG", "CO", "GO", "OQ", "IJ", "MN", "MW", "NW", "EF", "PR", "UV", "SZ", "BD"):
        assert (glyph_mask(a) != glyph_mask(b)).sum() >= 4, (a, b)


@pytest.mark.parametrize("band", BANDS)
def test_no_letter_crosses_its_cell_for_any_length_pair_and_band(band):
    rng = random.Random(band)
    for color, surface in LEGIBLE_PAIRS:
        for n in range(WORD_MIN_LEN, WORD_MAX_LEN + 1):
            word = "".join(rng.choice(ALPHABET) for _ in range(n))
            scene = pair_scene(color, surface, word, band)
            validate(scene)
            px = np.asarray(render(scene)).astype(int)
            ink = (px == ALL_COLORS[color]).all(-1)
            inside = np.zeros_like(ink)
            for ch, x, y in letter_cells(word, band):
                assert x % CODE_PX == 0 and y % CODE_PX == 0
                cell = ink[y:y + CELL_H, x:x + CELL_W]
                assert (cell == glyph_mask(ch)).all(), (word, ch, color, surface)
                inside[y:y + CELL_H, x:x + CELL_W] = True
            # the plaque or the background everywhere else in the sign's box: two colours only
            x0, y0, x1, y1 = plaque_box(word, band) if scene.sign.plaque else letters_box(word, band)
            assert not ink[y0:y1, x0:x1][~inside[y0:y1, x0:x1]].any(), (word, color, surface)   # ink only in cells
            assert all(v % CODE_PX == 0 for v in (x0, y0, x1, y1))
            box = px[y0:y1, x0:x1].reshape(-1, 3)
            assert {tuple(c) for c in box} == {ALL_COLORS[color], ALL_COLORS[surface]}


def test_placement_depends_only_on_the_length():
    for n in range(WORD_MIN_LEN, WORD_MAX_LEN + 1):
        starts = {letter_cells(w, "middle")[0][1] for w in ("A" * n, "Z" * n, ALPHABET[3:3 + n], ALPHABET[-n:])}
        assert starts == {first_column(n) * CODE_PX}
        x0, _, x1, _ = letters_box("A" * n, "middle")
        assert abs((x0 + x1) / 2 - 64) <= CODE_PX / 2      # centred to within half a code
    for band, row in LETTER_ROW.items():
        assert letter_cells("HI", band)[0][2] == row * CODE_PX


def test_every_sampled_sign_is_a_legible_pair():
    for seed in range(400):
        s = sample_scene(seed)
        if s.sign is not None:
            assert is_legible(s.sign.color, s.sign.plaque or s.background)


def test_an_illegible_pair_is_refused():
    with pytest.raises(InvalidScene, match="legible"):
        validate(Scene(background="white", sign=Sign(word="HI", color="yellow", plaque=None, band="top")))


def test_nearest_legible_pair():
    assert legible_pair("pink", "white", plaque_ok=False) == ("red", "white")
    assert legible_pair("white", "black") == ("white", "black")
    # no legible word colour on pink: the plaque changes to the nearest that has one
    color, surface = legible_pair("white", "pink", background="white")
    assert surface != "white" and is_legible(color, surface)


def illegible_asks(key: str, seeds: int):
    """The train-split sign prompts among the first `seeds` whose spec records `key` (what was asked
    instead of what was drawn), as (prompt, asked); at least ten of them, each matching its scene."""
    from mmgen.world.prompts import sample_prompt, spec_matches
    found = [(p, p.spec[key]) for p in (sample_prompt(random.Random(seed), "train", "sign") for seed in range(seeds))
             if p.spec.get(key) is not None]
    assert len(found) >= 10 and all(all(spec_matches(p.spec, p.scene).values()) for p, _ in found)
    return found


def test_prompts_naming_an_illegible_pair_get_a_legible_one_and_say_so():
    for p, asked in illegible_asks("illegible_color", 600):
        s = p.scene.sign
        surface = s.plaque or p.scene.background
        assert not is_legible(asked, surface)
        assert is_legible(s.color, surface) and legible_pair(asked, surface, plaque_ok=False)[0] == s.color
        first = p.reply.split(".")[0].lower()
        assert asked in first and s.color in first              # the reply says so first


def test_prompts_naming_a_plaque_no_letters_read_on_get_the_nearest_and_say_so():
    for p, asked in illegible_asks("illegible_plaque", 1500):
        s = p.scene.sign
        assert asked in p.text.lower() and asked not in {surface for _, surface in LEGIBLE_PAIRS}
        assert (s.color, s.plaque) == legible_pair(p.spec["sign"]["color"], asked, background=p.scene.background)
        first = p.reply.split(".")[0]
        assert asked in first and s.plaque in first                # the reply says so first


# --- the tokenizer's glyph codes --------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_vq():
    from mmgen.vq import VQTokenizer
    return VQTokenizer.from_pretrained("checkpoints/vq")


def test_every_glyph_patch_round_trips_exactly(shipped_vq):
    from mmgen.train.glyph_codes import all_glyph_patches, tile
    patches = all_glyph_patches()
    assert len(shipped_vq.glyphs) == len(patches)
    pixels = tile(patches)
    ids = shipped_vq.encode(pixels)
    assert shipped_vq.is_glyph(ids.flatten()[:len(patches)]).all()                                  # every glyph patch gets its glyph code
    assert len(set(ids.flatten()[:len(patches)].tolist())) == len(patches)
    back = shipped_vq.decode_tensor(ids)
    got = (back * 255).round().byte()
    want = (pixels * 255).round().byte()
    per = 256
    for i in range(len(patches)):
        b, r = divmod(i, per)
        y, x = divmod(r, 16)
        assert (got[b, :, y * 8:y * 8 + 8, x * 8:x * 8 + 8] == want[b, :, y * 8:y * 8 + 8, x * 8:x * 8 + 8]).all(), i


@pytest.mark.parametrize("color,surface", LEGIBLE_PAIRS)
def test_signs_round_trip_exactly_in_every_pair(shipped_vq, color, surface):
    scenes = [pair_scene(color, surface, w, b) for w, b in (("ABCDEFGH", "top"), ("IJKLMNOP", "middle"),
                                                             ("QRSTUVWX", "bottom"), ("YZ", "middle"))]
    imgs = [render(s) for s in scenes]
    for s, img, back in zip(scenes, imgs, shipped_vq.decode(shipped_vq.encode(imgs))):
        x0, y0, x1, y1 = letters_box(s.sign.word, s.sign.band)
        assert (np.asarray(img)[y0:y1, x0:x1] == np.asarray(back)[y0:y1, x0:x1]).all(), s.sign


def test_scenes_without_a_sign_keep_their_codes(shipped_vq):
    from mmgen.vq import VQTokenizer
    plain = VQTokenizer.from_pretrained("checkpoints/vq")
    plain.set_glyphs(None)
    scenes = [s for s in (sample_scene(10 ** 9 + i) for i in range(300)) if s.sign is None][:150]
    imgs = [render(s) for s in scenes]
    with_glyphs, without = shipped_vq.encode(imgs), plain.encode(imgs)
    assert shipped_vq.is_glyph(with_glyphs).float().mean() < 1e-4   # a shape rarely passes for a glyph
    assert (with_glyphs == without).float().mean() >= 0.999


def test_signs_come_back_pixel_exact_plaque_and_all(shipped_vq):
    from mmgen.world.render import sign_box
    scenes = [s for s in (sample_scene(10 ** 9 + i) for i in range(200)) if s.sign is not None][:30]
    imgs = [render(s) for s in scenes]
    for s, img, back in zip(scenes, imgs, shipped_vq.decode(shipped_vq.encode(imgs))):
        x0, y0, x1, y1 = (int(v) for v in sign_box(s.sign))
        assert (np.asarray(img)[y0:y1, x0:x1] == np.asarray(back)[y0:y1, x0:x1]).all(), s.sign


def test_one_colour_patches_decode_to_their_colour_and_keep_their_codes(shipped_vq):
    from mmgen.vq import VQTokenizer
    plain = VQTokenizer.from_pretrained("checkpoints/vq")
    plain.set_glyphs(None)
    for rgb in sorted(set(ALL_COLORS.values())):
        img = np.zeros((128, 128, 3), np.uint8)
        img[:] = rgb
        img[40:88, 40:88] = (250, 250, 250) if rgb != (250, 250, 250) else (23, 23, 23)
        from PIL import Image
        ids = shipped_vq.encode(Image.fromarray(img))
        assert (ids == plain.encode(Image.fromarray(img))).all()     # encoding is unchanged
        assert (np.asarray(shipped_vq.decode(ids)[0]) == img).all(), rgb
