"""Previews of a picture being drawn: the rows of codes drawn so far, the rows still to come flat grey.

    canvas = PreviewCanvas(model.vq)         # one per picture being drawn
    canvas.image(codes)                      # after each new row: the preview so far
    canvas.decoded(codes)                    # the final picture, if the last preview decoded it

The pipeline (pipeline.py) makes one canvas for the first picture of a reply it streams.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .stream import IMAGE_SIDE, IMAGE_TOKENS
from .vq import IMAGE_SIZE, pixels_to_images

PREVIEW_GREY = (128, 128, 128)
PREVIEW_MARGIN = 2     # rows of filler decoded under the drawn ones (decoder_preview, no preview table)
PATCH_SIDE = IMAGE_SIZE // IMAGE_SIDE    # pixels per code, each way


def preview_image(vq, codes: list[int]) -> Image.Image:
    """A picture in the making: the rows of codes drawn so far, the rest flat grey; all rows
    drawn, the picture itself (decoded). One-off; a stream of previews uses PreviewCanvas, which
    reuses the previous preview.

    With the tokenizer's preview table (`vq.preview_patches`, `mmgen train previews`) each drawn
    code is shown as the mean patch it decodes to, so a preview is a gather of patches with no
    decoder pass. A code's real pixels depend on its neighbours (the decoder smooths across
    patches), so the table's rows differ from the final picture's: measured, mean absolute
    difference in the drawn rows, 1.9 grey levels on the codes of 200 held-out scenes (10-90 % of
    scenes: 0.4-3.6), and 1.0 over the 15 previews of 8 pictures the shipped transformer drew
    (0.1-2.4 per picture), where the decoder previews below came to 0.28 (0.03-0.57). Glyph and
    one-colour codes show their exact pixels.

    Without a table only the drawn rows and PREVIEW_MARGIN rows below them (copies of the last
    drawn row) are decoded, so the first preview costs a third of a whole decode (~11 against
    ~34 ms measured on 2 AVX2 cores) and a picture's sixteen previews 10.5 decodes instead of 16.
    The decoder's group norms see the whole grid, so an unfinished grid decodes a little
    differently from the final picture: measured on a drawn picture, 1-2.6 grey levels on average
    in the drawn rows with this margin; a whole grid padded with copies of the last row came
    closer (0.1-0.6) at up to three times the cost."""
    return PreviewCanvas(vq).image(codes)


def decoder_preview(vq, codes: list[int], rows: int) -> Image.Image:
    """`rows` (< 16) drawn rows decoded with PREVIEW_MARGIN filler rows under them, the rest grey."""
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), PREVIEW_GREY)
    if rows == 0:
        return img
    drawn = torch.tensor(codes[:rows * IMAGE_SIDE]).view(1, rows, IMAGE_SIDE)
    height = min(IMAGE_SIDE, rows + PREVIEW_MARGIN)
    grid = torch.cat([drawn, drawn[:, -1:].expand(1, height - rows, IMAGE_SIDE)], dim=1)
    pixels = vq.decode_tensor(grid)                                       # [1, 3, 8·height, 128]
    img.paste(pixels_to_images(pixels[..., :rows * pixels.shape[-2] // height, :])[0])
    return img


class PreviewCanvas:
    """The previews of one picture as it is drawn, each the previous one plus the new rows.

    With a preview table a new row costs a gather of its 16 patches into the canvas kept from the
    previous preview; the rows shown before are never redrawn, so a preview's drawn rows stay as
    they were when later rows arrive: measured 10-16 ms for a picture's 15 previews, against
    1.9-2.4 s decoded, on 2 cores shared with a training job. Without a table each preview is
    decoded (decoder_preview).
    The last preview, all rows drawn, is the real decode; `decoded` hands it back so the final
    picture is not decoded a second time."""

    def __init__(self, vq):
        self.vq = vq
        self.table = getattr(vq, "preview_patches", None)
        self.codes: list[int] = []                    # the codes of the rows on the canvas
        self.pixels = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self.pixels[:] = PREVIEW_GREY
        self.picture: tuple[tuple[int, ...], Image.Image] | None = None   # (codes, the real decode)

    def image(self, codes: list[int]) -> Image.Image:
        """The preview of `codes` (the rows drawn so far; a partial row is left out)."""
        rows = min(len(codes) // IMAGE_SIDE, IMAGE_SIDE)
        if rows == IMAGE_SIDE:
            full = tuple(codes[:IMAGE_TOKENS])
            img = self.vq.decode(torch.tensor(full).view(1, IMAGE_SIDE, IMAGE_SIDE))[0]
            self.picture = (full, img.copy())          # the caller may draw on the one it gets
            return img
        if self.table is None:
            return decoder_preview(self.vq, codes, rows)
        self._paint(codes, rows)
        return Image.frombytes("RGB", (IMAGE_SIZE, IMAGE_SIZE), self.pixels.tobytes())   # a copy

    def _paint(self, codes: list[int], rows: int) -> None:
        """Bring the canvas to `rows` drawn rows of `codes`, pasting only the rows it lacks."""
        done = len(self.codes) // IMAGE_SIDE
        if done > rows or list(codes[:len(self.codes)]) != self.codes:   # another picture: start over
            self.pixels[:] = PREVIEW_GREY
            self.codes, done = [], 0
        for r in range(done, rows):
            row = torch.as_tensor(codes[r * IMAGE_SIDE:(r + 1) * IMAGE_SIDE])
            patches = self.table[row].numpy()                         # [16, 8, 8, 3]
            # patch columns side by side: [16, 8, 8, 3] → [8 pixel rows, 16 · 8 pixels, 3]
            self.pixels[r * PATCH_SIDE:(r + 1) * PATCH_SIDE] = patches.transpose(1, 0, 2, 3).reshape(PATCH_SIDE, IMAGE_SIZE, 3)
        self.codes = list(codes[:rows * IMAGE_SIDE])

    def decoded(self, codes) -> Image.Image | None:
        """A copy of the real decode of `codes` if the last preview was of them, else None."""
        if self.picture is not None and self.picture[0] == tuple(codes):
            return self.picture[1].copy()
        return None

