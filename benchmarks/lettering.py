"""The lettering as drawn and as the tokenizer gives it back: a contact sheet and an exactness count.

    python benchmarks/lettering.py [--vq checkpoints/vq] [--sheet lettering.png] [--scale 3]

For each legible word/surface colour pair (scene.LEGIBLE_PAIRS) the 26 letters are rendered in two
rows of 13 cells on the surface colour and encoded and decoded by the tokenizer. Prints, per pair,
how many letters come back pixel-exact, and writes a sheet: per pair, rendered | reconstructed.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from mmgen.vq import VQTokenizer
from mmgen.world.lettering import CELL_H, CELL_W, CODE_PX, FONT_5X7, glyph_mask
from mmgen.world.scene import ALL_COLORS, BACKGROUND_COLORS, LEGIBLE_PAIRS

PER_ROW = 13
SHEET_ROWS = slice(CODE_PX, CODE_PX * 8)   # the plaque: a code of margin round the two letter rows
LABEL_W = 120                     # px of the sheet's left column naming the pair (at scale 1 of the label)


def alphabet_picture(color: str, surface: str) -> np.ndarray:
    """uint8 [128, 128, 3]: A–M and N–Z in letter cells on the code grid, on a plaque of `surface`
    (on a white background) or, for a background colour, on a background of it."""
    img = np.empty((128, 128, 3), np.uint8)
    img[:] = ALL_COLORS[surface if surface in BACKGROUND_COLORS else "white"]
    img[SHEET_ROWS, :CODE_PX * (PER_ROW + 2)] = ALL_COLORS[surface]
    for i, ch in enumerate(sorted(FONT_5X7)):
        row, col = divmod(i, PER_ROW)
        x, y = CODE_PX * (1 + col), CODE_PX * (2 + 3 * row)
        img[y:y + CELL_H, x:x + CELL_W][glyph_mask(ch)] = ALL_COLORS[color]
    return img


def letters_exact(a: np.ndarray, b: np.ndarray) -> int:
    n = 0
    for i in range(len(FONT_5X7)):
        row, col = divmod(i, PER_ROW)
        x, y = CODE_PX * (1 + col), CODE_PX * (2 + 3 * row)
        n += bool((a[y:y + CELL_H, x:x + CELL_W] == b[y:y + CELL_H, x:x + CELL_W]).all())
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vq", default="checkpoints/vq")
    ap.add_argument("--sheet", default=None, help="write the contact sheet here (PNG)")
    ap.add_argument("--scale", type=int, default=3)
    args = ap.parse_args()
    vq = VQTokenizer.from_pretrained(args.vq)
    pictures = [alphabet_picture(c, s) for c, s in LEGIBLE_PAIRS]
    back = [np.asarray(im) for im in vq.decode(vq.encode([Image.fromarray(p) for p in pictures]))]
    total = 0
    for (c, s), a, b in zip(LEGIBLE_PAIRS, pictures, back):
        n = letters_exact(a, b)
        total += n
        print(f"{c:>6} on {s:<10} {n:2d}/26 letters pixel-exact")
    print(f"all pairs: {total}/{26 * len(LEGIBLE_PAIRS)} letters pixel-exact "
          f"({'with' if vq.glyphs is not None else 'without'} glyph codes)")
    if args.sheet:
        rows = []
        for (c, s), a, b in zip(LEGIBLE_PAIRS, pictures, back):
            band = np.concatenate([a[SHEET_ROWS], np.full((56, 4, 3), 128, np.uint8), b[SHEET_ROWS]], 1)
            rows.append(np.kron(band, np.ones((args.scale, args.scale, 1), np.uint8)))
        sheet = Image.fromarray(np.concatenate(rows, 0))
        labelled = Image.new("RGB", (sheet.width + LABEL_W, sheet.height), (255, 255, 255))
        labelled.paste(sheet, (LABEL_W, 0))
        d = ImageDraw.Draw(labelled)
        for i, (c, s) in enumerate(LEGIBLE_PAIRS):
            d.text((4, i * 56 * args.scale + 40), f"{c} on\n{s}", fill=(0, 0, 0))
        labelled.save(args.sheet)
        print(f"sheet (rendered | reconstructed) → {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
