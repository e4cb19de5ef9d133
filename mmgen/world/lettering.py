"""Lettering on the code grid: a monospace bitmap face whose letter cells are 8 × 16 px patches.

The image tokenizer gives one code per 8 × 8 patch (`vq.DOWNSAMPLE`). A letter here owns one cell
one code wide and two codes tall, so every 8 × 8 patch of a word holds the top or bottom half of
exactly one letter, in one colour on one surface colour, at one fixed offset: each code is a
function of (letter, half, colours) and nothing else — a lookup table the transformer can learn —
and the set of glyph patches the world can produce is finite (`glyph_patches`), so the tokenizer
can keep every one of them exactly.

The face is a classic 5 × 7 dot-matrix alphabet (every capital distinct: C/G/O/Q, I/J, M/N/W, S)
scaled to 7 × 14 px: rows doubled, the outer columns two pixels wide and the inner three one pixel,
so stems are bold and diagonals stay open. No anti-aliasing: a glyph patch has exactly two colours.

Where a sign goes (all edges on the 8-px grid):
    letter rows   two code rows per band (`LETTER_ROW`), the band's letters fill them
    first column  (GRID_CODES − n) // 2 for an n-letter word: centred, a function of n alone
    plaque        one code of margin round the letters: rows LETTER_ROW−1 … LETTER_ROW+2, square corners
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

CODE_PX = 8                       # the image tokenizer's patch side (vq.DOWNSAMPLE)
GRID_CODES = 16                   # codes per side of the 128-px canvas
CELL_W, CELL_H = CODE_PX, 2 * CODE_PX   # a letter's cell: one code wide, two codes tall
CELL_CODES = (CELL_H // CODE_PX) * (CELL_W // CODE_PX)   # 2 codes per letter
PLAQUE_MARGIN_CODES = 1           # codes of plaque round the letters on every side
# the first of a band's two letter rows (in codes): the code rows nearest the band's centre
LETTER_ROW = {"top": 2, "middle": 7, "bottom": 12}

# 5 × 7 capitals ('#' = ink), after the HD44780 character ROM, with D, G, J, Q, W opened up
FONT_5X7: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}
FONT_COLUMN_PX = (2, 1, 1, 1, 2)  # pixels per font column: bold outer stems, open inner strokes
FONT_ROW_PX = 2                   # pixels per font row
GLYPH_LEFT, GLYPH_TOP = 0, 1      # where the 7 × 14 glyph sits in its 8 × 16 cell (a 1-px gutter right, top, bottom)


@lru_cache(maxsize=None)
def glyph_mask(letter: str) -> np.ndarray:
    """The letter's ink in its cell: bool [CELL_H, CELL_W]."""
    rows = FONT_5X7[letter]
    cols = np.repeat(np.arange(5), FONT_COLUMN_PX)                   # glyph column → font column
    ink = np.array([[r[c] == "#" for c in cols] for r in rows])     # [7, 7]
    ink = np.repeat(ink, FONT_ROW_PX, axis=0)                        # [14, 7]
    cell = np.zeros((CELL_H, CELL_W), bool)
    cell[GLYPH_TOP:GLYPH_TOP + ink.shape[0], GLYPH_LEFT:GLYPH_LEFT + ink.shape[1]] = ink
    cell.setflags(write=False)
    return cell


def first_column(n_letters: int) -> int:
    """Code column of a word's first letter: centred on the grid, a function of its length only."""
    return (GRID_CODES - n_letters * (CELL_W // CODE_PX)) // 2


def letter_cells(word: str, band: str) -> list[tuple[str, int, int]]:
    """(letter, x0, y0) in pixels of each letter cell's top-left corner."""
    x0, y0 = first_column(len(word)) * CODE_PX, LETTER_ROW[band] * CODE_PX
    return [(ch, x0 + i * CELL_W, y0) for i, ch in enumerate(word)]


def letters_box(word: str, band: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box of the word's letter cells (x1, y1 exclusive)."""
    x0, y0 = first_column(len(word)) * CODE_PX, LETTER_ROW[band] * CODE_PX
    return x0, y0, x0 + len(word) * CELL_W, y0 + CELL_H


def plaque_box(word: str, band: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box of the plaque behind a word: one code of margin all round."""
    x0, y0, x1, y1 = letters_box(word, band)
    m = PLAQUE_MARGIN_CODES * CODE_PX
    return x0 - m, y0 - m, x1 + m, y1 + m


def draw_word(pixels: np.ndarray, word: str, band: str, color: tuple[int, int, int],
              plaque: tuple[int, int, int] | None) -> None:
    """Paint a sign into an RGB uint8 array [128, 128, 3] in place."""
    if plaque is not None:
        x0, y0, x1, y1 = plaque_box(word, band)
        pixels[y0:y1, x0:x1] = plaque
    for ch, x, y in letter_cells(word, band):
        pixels[y:y + CELL_H, x:x + CELL_W][glyph_mask(ch)] = color


def glyph_patches(letter: str, color: tuple[int, int, int], surface: tuple[int, int, int]) -> list[np.ndarray]:
    """The letter's code patches (uint8 [8, 8, 3], top to bottom) in `color` on `surface`."""
    cell = np.where(glyph_mask(letter)[..., None], np.array(color, np.uint8), np.array(surface, np.uint8))
    return [cell[i:i + CODE_PX] for i in range(0, CELL_H, CODE_PX)]
