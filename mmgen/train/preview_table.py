"""The per-code preview table: `mmgen train previews`.

    mmgen train previews --vq checkpoints/vq            # the table, into the tokenizer checkpoint

While a picture is drawn the chat shows a preview per row (previews.PreviewCanvas). Running the
decoder for each added 2.6 s to a picture of 19 s (benchmarks/generate.py --previews-only, 2 cores
shared with a training job); instead each code gets the 8 × 8 patch it usually decodes to, so a
preview is the previous one with the new row's 16 patches pasted.

A code's patch is the mean of its decoded patches over `--scenes` training scenes (seeds 0 …,
encoded then decoded, as the final picture is). The lettering's glyph and one-colour codes
(vq.GlyphCodes) decode to exact pixels: those are their patches. A code no scene used borrows
the patch of the nearest used code (in the quantizer's latent space), so nothing shows as a hole.
Nothing is learnt and only the table file is written: the weights stay byte for byte as they were.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_save_safetensors
from ..vq import DOWNSAMPLE, GRID, PREVIEW_FILE, VQTokenizer

SCENES = 2000                  # training scenes the means are taken over
CHECK_SCENES = 100             # held-out scenes the table is measured on
HELD_OUT_SEED = 1_000_000_000  # seeds from here on are held out of training (mmgen.world)
BATCH = 64


def patches_of(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels [B, 3, 128, 128] in [0, 1] → grey levels [B·256, 8, 8, 3] in raster order of the grid."""
    b = pixels.shape[0]
    x = pixels.float().reshape(b, 3, GRID, DOWNSAMPLE, GRID, DOWNSAMPLE).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b * GRID * GRID, DOWNSAMPLE, DOWNSAMPLE, 3) * 255


def scenes(seeds: range, batch: int = BATCH):
    """Rendered world scenes, `batch` at a time."""
    from ..world import render, sample_scene
    for i in range(seeds.start, seeds.stop, batch):
        yield [render(sample_scene(s)) for s in range(i, min(seeds.stop, i + batch))]


def decoded_sums(vq: VQTokenizer, n_scenes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per code: the sum of its decoded patches (float64 [K, 8, 8, 3]) and how often it occurs."""
    sums = torch.zeros(vq.codebook_size, DOWNSAMPLE, DOWNSAMPLE, 3, dtype=torch.float64)
    counts = torch.zeros(vq.codebook_size, dtype=torch.long)
    for imgs in scenes(range(n_scenes)):
        ids = vq.encode(imgs)
        sums.index_add_(0, ids.reshape(-1), patches_of(vq.decode_tensor(ids).cpu()).double())
        counts += torch.bincount(ids.reshape(-1), minlength=vq.codebook_size)
    return sums, counts


def nearest_seen(vq: VQTokenizer, seen: torch.Tensor) -> torch.Tensor:
    """[K] for each code the nearest code in `seen` (bool [K]) by quantized latent; seen codes map to themselves."""
    latent = vq.ids_to_latent(torch.arange(vq.codebook_size).view(1, 1, -1))[0, :, 0].T.float()   # [K, D]
    used = torch.nonzero(seen).flatten()
    nearest = used[torch.cdist(latent, latent[used]).argmin(-1)]
    return torch.where(seen, torch.arange(vq.codebook_size), nearest)


def build(vq: VQTokenizer, n_scenes: int = SCENES) -> tuple[torch.Tensor, dict]:
    """The table, uint8 [codebook_size, 8, 8, 3], and a record of how it was made."""
    sums, counts = decoded_sums(vq, n_scenes)
    seen = counts > 0
    means = sums / counts.clamp(min=1).view(-1, 1, 1, 1)
    table = means[nearest_seen(vq, seen)]
    exact = 0
    if vq.glyphs is not None:                      # decoding pastes these pixels exactly
        table[vq.glyphs.ids] = vq.glyphs.patches.permute(0, 2, 3, 1).double() * 255
        exact = len(vq.glyphs.ids)
    info = {"scenes": n_scenes, "codes_seen": int(seen.sum()), "exact_codes": exact,
            "unseen_filled_from_nearest": int((~seen).sum())}
    return table.round().clamp(0, 255).to(torch.uint8), info


def paste(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """ids [B, 16, 16] → the table's pictures, float grey levels [B, 128, 128, 3]."""
    b = ids.shape[0]
    p = table[ids.reshape(-1)].reshape(b, GRID, GRID, DOWNSAMPLE, DOWNSAMPLE, 3).permute(0, 1, 3, 2, 4, 5)
    return p.reshape(b, GRID * DOWNSAMPLE, GRID * DOWNSAMPLE, 3).float()


def held_out_error(vq: VQTokenizer, table: torch.Tensor, n_scenes: int = CHECK_SCENES) -> list[float]:
    """Per held-out scene: mean absolute grey-level difference between the table's picture of its
    codes and the decoded picture (what the final picture shows)."""
    errors = []
    for imgs in scenes(range(HELD_OUT_SEED, HELD_OUT_SEED + n_scenes)):
        ids = vq.encode(imgs)
        final = (vq.decode_tensor(ids).cpu() * 255).round().permute(0, 2, 3, 1)
        errors += (paste(table, ids) - final).abs().mean(dim=(1, 2, 3)).tolist()
    return errors


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vq", default="checkpoints/vq", help="tokenizer checkpoint; the table is written into it")
    p.add_argument("--scenes", type=int, default=SCENES, help="training scenes the per-code means are taken over")
    p.add_argument("--check", type=int, default=CHECK_SCENES, help="held-out scenes to measure the table on (0: none)")


def run(args) -> int:
    with torch.no_grad():      # a context, not a global switch: `mmgen` commands also run in-process
        return _run(args)


def _run(args) -> int:
    vq = VQTokenizer.from_pretrained(args.vq)
    table, info = build(vq, args.scenes)
    if args.check:
        errors = held_out_error(vq, table, args.check)
        info.update(check_scenes=args.check, mean_abs_error=float(np.mean(errors)),
                    error_p10_p90=[float(np.percentile(errors, 10)), float(np.percentile(errors, 90))])
    # only the table is written: the weights, config and glyph table stay as they were
    atomic_save_safetensors({"patches": table}, Path(args.vq) / PREVIEW_FILE,
                            metadata={"format": "pt", "info": json.dumps(info)})
    print(json.dumps(info))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mmgen train previews", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
