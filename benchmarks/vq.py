"""Benchmark the shipped image tokenizer on held-out scenes.

    python benchmarks/vq.py                       # checkpoints/vq, 1 000 held-out scenes
    python benchmarks/vq.py --n 200 --checkpoint runs/some_vq

Prints: PSNR and SSIM of decode(encode(x)) against x over `--n` scenes from the held-out seeds
(exactly a third with signs, and the same figures for the sign scenes alone); codebook usage
(distinct ids over those scenes ÷ codebook size); judge agreement — the fraction of
reconstructions where `compare(scene.to_dict(), judge(reconstruction))["exact"]` holds, word
included (needs `mmgen.eval.judge`; the judge's score on the originals is printed beside it as its
ceiling); re-encoding (codes kept by encode(decode(encode(x)))); how local the codes are — the
entropy of the codes a plain one-colour 8 × 8 patch gets, and the share of codes an edit from the
world leaves as they were in patches 4+ cells from any pixel it changed (what the transformer can
copy when it edits); and encode + decode time per image on CPU at batch 1 and batched. Figures
only, never a pass/fail on a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from mmgen.hardware import bf16_fast_on_cpu
from mmgen.vq import VQTokenizer
from mmgen.world import render, sample_scene
from mmgen.world.scene import eval_seed

# SSIM as in Wang et al. 2004 (IEEE TIP 13(4)): 11-tap Gaussian window, σ = 1.5, K1 = 0.01,
# K2 = 0.03, on 8-bit values per RGB channel, averaged over channels and pixels.
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5          # truncate 3.5σ → radius 5 → 11 × 11 window
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 H × W × 3 images."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    f = lambda t: gaussian_filter(t, sigma=(SSIM_SIGMA, SSIM_SIGMA, 0), truncate=SSIM_TRUNCATE)
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return float(s.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def held_out_scenes(n: int):
    """The first n held-out scenes such that exactly round(n/3) carry a sign."""
    want_sign = round(n / 3)
    scenes, i, n_sign = [], 0, 0
    while len(scenes) < n:
        s = sample_scene(eval_seed(i))
        i += 1
        has = s.sign is not None
        if (has and n_sign < want_sign) or (not has and len(scenes) - n_sign < n - want_sign):
            scenes.append(s)
            n_sign += has
    return scenes


def save_grid(path: str, scenes, originals, recon, per_kind: int = 8, zoom: int = 2) -> None:
    """Rows of (original, reconstruction) pairs at `zoom`×: sign scenes first, then scenes without."""
    from PIL import Image
    pick = ([i for i, s in enumerate(scenes) if s.sign is not None][:per_kind]
            + [i for i, s in enumerate(scenes) if s.sign is None][:per_kind])
    size, cols = 128 * zoom, 4                       # 4 pairs per row
    rows = (len(pick) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (2 * size + 8), rows * (size + 8)), (255, 0, 255))
    for k, i in enumerate(pick):
        x, y = (k % cols) * (2 * size + 8), (k // cols) * (size + 8)
        sheet.paste(originals[i].resize((size, size), Image.Resampling.NEAREST), (x, y))
        sheet.paste(recon[i].resize((size, size), Image.Resampling.NEAREST), (x + size, y))
    sheet.save(path)


def flat_patch_entropy(scenes, originals, ids) -> tuple[float, float]:
    """Over the one-colour 8 × 8 patches of the scenes' backgrounds: the mean (weighted by patches)
    entropy in nats of the codes each background colour gets, and the mean number of distinct codes."""
    from collections import Counter, defaultdict
    by_colour: dict = defaultdict(Counter)
    for img, grid in zip(originals, ids):
        p = np.asarray(img).reshape(16, 8, 16, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, 16, 64, 3)
        flat = (p == p[:, :, :1]).all(axis=(2, 3))
        for y, x in zip(*np.nonzero(flat)):
            by_colour[tuple(p[y, x, 0])][int(grid[y, x])] += 1
    total = sum(sum(c.values()) for c in by_colour.values())
    h = distinct = 0.0
    for c in by_colour.values():
        n = sum(c.values())
        pr = np.array(list(c.values())) / n
        h += n / total * float(-(pr * np.log(pr)).sum())
        distinct += n / total * len(c)
    return h, distinct


def edit_locality(tok, n: int = 60, margin: int = 4) -> float:
    """Share of codes kept by world edits in patches ≥ `margin` cells from every changed pixel."""
    import torch.nn.functional as F
    from mmgen.world.conversation import sample_conversation
    kept, seed, pairs = [], 0, 0
    while pairs < n:
        c = sample_conversation(seed, split="eval")
        seed += 1
        for i in range(1, len(c.turns) - 2, 2):
            a, b = c.turns[i].image, c.turns[i + 2].image
            if c.turns[i + 1].task != "edit" or a is None or b is None or pairs >= n:
                continue
            ia, ib = render(a), render(b)
            changed = (np.abs(np.asarray(ia, dtype=int) - np.asarray(ib, dtype=int)).sum(-1) > 0)
            changed = torch.tensor(changed.reshape(16, 8, 16, 8).any(axis=(1, 3)), dtype=torch.float)
            far = F.max_pool2d(changed[None, None], 2 * margin + 1, 1, margin)[0, 0] == 0
            if not far.any():
                continue
            ca, cb = tok.encode([ia, ib])
            kept.append((ca == cb)[far].float().mean().item())
            pairs += 1
    return float(np.mean(kept))


def load_judge():
    try:
        from mmgen.eval.judge import compare, judge
        return judge, compare
    except ImportError as e:
        return None, str(e)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/vq")
    p.add_argument("--n", type=int, default=1000, help="held-out scenes")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--timing-runs", type=int, default=50)
    p.add_argument("--grid", help="also write originals | reconstructions side by side to this PNG")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = VQTokenizer.from_pretrained(args.checkpoint)
    cfg = tok.config
    print(f"checkpoint {args.checkpoint}: {cfg.quantizer} codebook {tok.codebook_size}, "
          f"{sum(p.numel() for p in tok.parameters()) / 1e6:.2f}M params, trained {cfg.training.get('step', '?')} steps / "
          f"{cfg.training.get('images_seen', '?')} images / {cfg.training.get('wall_seconds', 0) / 60:.0f} min; "
          f"bf16 inference: {bf16_fast_on_cpu()}; threads {torch.get_num_threads()}")

    scenes = held_out_scenes(args.n)
    originals = [render(s) for s in scenes]
    first = torch.cat([tok.encode(originals[i:i + args.batch_size]) for i in range(0, len(originals), args.batch_size)])
    used = torch.zeros(tok.codebook_size, dtype=torch.bool)
    used[first.flatten()] = True
    recon = [im for i in range(0, len(first), args.batch_size) for im in tok.decode(first[i:i + args.batch_size])]

    if args.grid:
        save_grid(args.grid, scenes, originals, recon)
        print(f"grid              {args.grid}")
    ps, ss = [], []
    for a, b in zip(originals, recon):
        a, b = np.asarray(a), np.asarray(b)
        ps.append(psnr(a, b))
        ss.append(ssim(a, b))
    sign = np.array([s.sign is not None for s in scenes])
    ps, ss = np.array(ps), np.array(ss)
    print(f"scenes            {len(scenes)} held-out ({sign.sum()} with signs)")
    print(f"PSNR              {ps.mean():.2f} dB mean (min {ps.min():.2f}, signs {ps[sign].mean():.2f}, no sign {ps[~sign].mean():.2f})")
    print(f"SSIM              {ss.mean():.4f} mean (min {ss.min():.4f}, signs {ss[sign].mean():.4f}, no sign {ss[~sign].mean():.4f})")
    print(f"codebook usage    {used.sum().item()} / {tok.codebook_size} = {used.float().mean().item():.1%}")
    if tok.glyphs is not None:
        plain = VQTokenizer.from_pretrained(args.checkpoint)
        plain.set_glyphs(None)
        without = torch.cat([plain.encode(originals[i:i + args.batch_size]) for i in range(0, len(originals), args.batch_size)])
        same = (without == first).flatten(1).float().mean(1).numpy()
        glyph_share = tok.is_glyph(first).float().mean().item()
        print(f"glyph codes       {len(tok.glyphs)} exact letter patches; {glyph_share:.2%} of all codes; codes as "
              f"without them: no-sign scenes {same[~sign].mean():.3%}, sign scenes {same[sign].mean():.1%}")
    again = torch.cat([tok.encode(recon[i:i + args.batch_size]) for i in range(0, len(recon), args.batch_size)])
    print(f"re-encoding       {(again == first).float().mean().item():.1%} of codes kept by encode(decode(encode(x)))")
    h, distinct = flat_patch_entropy(scenes, originals, first)
    print(f"locality          a one-colour patch: {h:.2f} nats over {distinct:.0f} codes (per colour, mean); "
          f"codes an edit keeps 4+ cells from its changes: {edit_locality(tok):.1%}")

    judge, compare = load_judge()
    if judge is None:
        print(f"judge agreement   n/a: mmgen.eval.judge not importable ({compare})")
    else:
        ok_rec, ok_orig, word_rec = [], [], []
        for s, a, b in zip(scenes, originals, recon):
            truth = s.to_dict()
            found = judge(b)
            ok_rec.append(bool(compare(truth, found)["exact"]))
            ok_orig.append(bool(compare(truth, judge(a))["exact"]))
            if s.sign is not None:
                word_rec.append(found["sign"] is not None and found["sign"]["word"] == s.sign.word)
        ok_rec, ok_orig = np.array(ok_rec), np.array(ok_orig)
        print(f"judge agreement   {ok_rec.mean():.1%} exact on reconstructions (signs {ok_rec[sign].mean():.1%}, "
              f"no sign {ok_rec[~sign].mean():.1%}); judge on originals {ok_orig.mean():.1%}; "
              f"every letter right on {np.mean(word_rec):.1%} of sign reconstructions")

    # timing: PIL in → ids → PIL out, the user-facing path
    one = originals[0]
    for _ in range(5):
        tok.decode(tok.encode(one))
    t = []
    for i in range(args.timing_runs):
        img = originals[i % len(originals)]
        t0 = time.perf_counter()
        tok.decode(tok.encode(img))
        t.append(time.perf_counter() - t0)
    batch = originals[:32]
    tok.decode(tok.encode(batch))
    tb = []
    for _ in range(3):
        t0 = time.perf_counter()
        tok.decode(tok.encode(batch))
        tb.append((time.perf_counter() - t0) / len(batch))
    print(f"encode+decode     batch 1: {statistics.median(t) * 1e3:.1f} ms/image median "
          f"(p90 {np.percentile(t, 90) * 1e3:.1f}); batch 32: {min(tb) * 1e3:.1f} ms/image (CPU, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
