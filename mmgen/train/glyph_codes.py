"""Give the world's lettering exact codes: `mmgen train glyphs`.

    mmgen train glyphs --vq checkpoints/vq                       # the table, into the tokenizer
    mmgen train glyphs --vq checkpoints/vq --lm checkpoints/lm --lm-out runs/lm_glyphs

Every glyph patch the world can draw (26 letters × 2 halves × each legible colour pair, identical
patches once) gets a codebook id of its own, chosen among the ids no picture of `--usage-scenes`
training scenes is encoded to (vq.GlyphCodes). Nothing is learnt: the codebook, the encoder and
the decoder stay as they are, so every code outside a sign is what it was.

With --lm, the transformer's rows for the new ids (embedding = output row; they are tied) start as
copies of the rows of the codes the patches were encoded to before: the model then draws a sign's
area as it did, and a fine-tune only has to tell the letters apart.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_save_safetensors
from ..vq import DOWNSAMPLE, GLYPH_FILE, GRID, GlyphCodes, VQTokenizer
from ..world.lettering import FONT_5X7, glyph_patches
from ..world.scene import ALL_COLORS, LEGIBLE_PAIRS

USAGE_SCENES = 2000


def all_glyph_patches() -> np.ndarray:
    """uint8 [G, 8, 8, 3]: every distinct glyph patch the world can draw, in a fixed order."""
    seen: dict[bytes, np.ndarray] = {}
    for color, surface in LEGIBLE_PAIRS:
        for letter in sorted(FONT_5X7):
            for p in glyph_patches(letter, ALL_COLORS[color], ALL_COLORS[surface]):
                seen.setdefault(p.tobytes(), p)
    return np.stack(list(seen.values()))


def tile(patches: np.ndarray) -> torch.Tensor:
    """[G, 8, 8, 3] uint8 → pictures [ceil(G/256), 3, 128, 128] in [0, 1] holding them in raster order."""
    per = GRID * GRID
    n = -(-len(patches) // per)
    canvas = np.zeros((n * per, DOWNSAMPLE, DOWNSAMPLE, 3), np.uint8)
    canvas[:len(patches)] = patches
    canvas = canvas.reshape(n, GRID, GRID, DOWNSAMPLE, DOWNSAMPLE, 3).transpose(0, 1, 3, 2, 4, 5)
    return torch.from_numpy(canvas.reshape(n, GRID * DOWNSAMPLE, GRID * DOWNSAMPLE, 3).copy()).permute(0, 3, 1, 2).float() / 255


def code_usage(vq: VQTokenizer, n_scenes: int, batch: int = 64) -> torch.Tensor:
    """How often each code encodes a patch of `n_scenes` training scenes (seeds 0 …)."""
    from ..world import render, sample_scene
    counts = torch.zeros(vq.codebook_size, dtype=torch.long)
    for i in range(0, n_scenes, batch):
        imgs = [render(sample_scene(s)) for s in range(i, min(n_scenes, i + batch))]
        counts += torch.bincount(vq.encode(imgs).flatten(), minlength=vq.codebook_size)
    return counts


def build(vq: VQTokenizer, usage_scenes: int = USAGE_SCENES) -> tuple[GlyphCodes, dict]:
    vq.set_glyphs(None)
    patches = all_glyph_patches()
    pixels = tile(patches)
    base = vq.encode(pixels).reshape(-1)[:len(patches)]
    usage = code_usage(vq, usage_scenes)
    usage[base] += 1                                   # a base code is in use even if no scene showed it
    free = torch.nonzero(usage == 0).flatten()
    if len(free) < len(patches):
        raise SystemExit(f"{len(patches)} glyph patches but only {len(free)} unused codes")
    ids = free[:len(patches)]
    flat_ids, flat_patches = one_colour_codes(vq)
    pixels = torch.from_numpy(np.concatenate([patches, flat_patches])).permute(0, 3, 1, 2).float() / 255
    info = {"patches": len(patches), "pairs": [list(p) for p in LEGIBLE_PAIRS], "usage_scenes": usage_scenes,
            "codes_in_use": int((usage > 0).sum()), "distinct_base_codes": int(base.unique().numel()),
            "one_colour_codes": len(flat_ids)}
    reserved = torch.cat([torch.ones(len(ids), dtype=torch.bool), torch.zeros(len(flat_ids), dtype=torch.bool)])
    return GlyphCodes(torch.cat([ids, flat_ids]), torch.cat([base, flat_ids]), pixels, reserved), info


def one_colour_codes(vq: VQTokenizer) -> tuple[torch.Tensor, np.ndarray]:
    """The code of each palette colour's plain patch, and the patches (uint8 [C, 8, 8, 3]); a code
    two colours share is left out (decoding could not tell which colour to paste)."""
    colors = sorted({rgb for rgb in ALL_COLORS.values()})
    patches = np.stack([np.broadcast_to(np.array(c, np.uint8), (DOWNSAMPLE, DOWNSAMPLE, 3)) for c in colors])
    codes = vq.encode(tile(patches)).reshape(-1)[:len(colors)]
    keep = [i for i, c in enumerate(codes.tolist()) if codes.tolist().count(c) == 1]
    return codes[keep], patches[keep]


def copy_rows(lm_in: str, lm_out: str, glyphs: GlyphCodes) -> None:
    """Save the transformer at `lm_in` to `lm_out` with each glyph id's row copied from its base code's."""
    from ..model import load_model
    from ..text import TextTokenizer
    from .common import save_lm_checkpoint
    model = load_model(lm_in)
    offset = model.config.mmgen_stream["image_offset"]
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[offset + glyphs.ids] = emb[offset + glyphs.base]
    progress = dict(getattr(model.config, "mmgen_training", {}) or {})
    progress.setdefault("notes", []).append(f"step {progress.get('steps')}: {len(glyphs)} glyph code rows "
                                            "copied from their base codes (mmgen.train.glyph_codes)")
    save_lm_checkpoint(model, TextTokenizer.from_pretrained(lm_in), lm_out, progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vq", default="checkpoints/vq", help="tokenizer checkpoint; the table is written into it")
    p.add_argument("--usage-scenes", type=int, default=USAGE_SCENES, help="scenes that decide which codes are unused")
    p.add_argument("--lm", default=None, help="a transformer checkpoint whose glyph rows to initialise")
    p.add_argument("--lm-out", default=None, help="where that transformer goes (required with --lm)")


def run(args) -> int:
    if args.lm and not args.lm_out:
        print("--lm needs --lm-out", file=sys.stderr)
        return 2
    with torch.no_grad():      # a context, not a global switch: `mmgen` commands also run in-process
        vq = VQTokenizer.from_pretrained(args.vq)
        glyphs, info = build(vq, args.usage_scenes)
    # only the table is written: the weights and config stay byte for byte as they were
    atomic_save_safetensors(glyphs.state(), Path(args.vq) / GLYPH_FILE,
                            metadata={"format": "pt", "info": json.dumps(info)})
    print(f"{info['patches']} glyph patches → ids {int(glyphs.ids.min())}…{int(glyphs.ids.max())}; "
          f"{info['codes_in_use']} codes in use on {info['usage_scenes']} scenes; "
          f"{info['distinct_base_codes']} distinct base codes")
    if args.lm:
        copy_rows(args.lm, args.lm_out, glyphs)
        print(f"transformer with glyph rows → {args.lm_out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mmgen train glyphs", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
