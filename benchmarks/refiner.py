"""Benchmark the diffusion refiner on held-out scenes with corrupted codes.

    python benchmarks/refiner.py                          # checkpoints/refiner + checkpoints/vq, 1 000 scenes
    python benchmarks/refiner.py --n 200 --checkpoint runs/some_refiner --grid refiner.png

For each corruption rate (default 0 %, 2 %, 5 %, 10 %): the held-out scenes of benchmarks/vq.py
(exactly a third with signs) are encoded, `corrupt_codes` changes that fraction of each picture's
codes (seeded), and the decode ("before") and its refinement at the shipped step count ("after")
are scored against the clean render: PSNR, SSIM (Wang et al. 2004, as in benchmarks/vq.py) and
judge agreement (`compare(scene, judge(picture))["exact"]`). Then the refiner's time per picture
on CPU, PIL in → PIL out, at batch 1 for 1-4 steps (the shipped count marked). The issue's
targets are printed beside the figures; the exit status never depends on them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vq import held_out_scenes, load_judge, psnr, ssim  # noqa: E402  (benchmarks/vq.py, beside this file)

from mmgen.refiner import Refiner, corrupt_codes  # noqa: E402
from mmgen.hardware import bf16_fast_on_cpu  # noqa: E402
from mmgen.vq import VQTokenizer  # noqa: E402
from mmgen.world import render  # noqa: E402

TARGET_GAIN_DB = 2.0          # PSNR gain wanted at 5 % corrupted codes
TARGET_MS = 150.0             # time per picture wanted at the shipped step count (2 CPU cores)


def scores(scenes, originals, pictures, judge, compare) -> dict:
    ps = np.array([psnr(np.asarray(a), np.asarray(b)) for a, b in zip(originals, pictures)])
    ss = np.array([ssim(np.asarray(a), np.asarray(b)) for a, b in zip(originals, pictures)])
    ok = None
    if judge is not None:
        ok = np.array([bool(compare(s.to_dict(), judge(p))["exact"]) for s, p in zip(scenes, pictures)])
    return {"psnr": ps, "ssim": ss, "judge": ok}


def save_grid(path: str, originals, rows: list[tuple[list, list]], per_rate: int = 6, zoom: int = 2) -> None:
    """One row per rate: (clean, before, after) triples for the first `per_rate` scenes, at `zoom`×."""
    from PIL import Image
    size = 128 * zoom
    cols = min(per_rate, len(originals))
    sheet = Image.new("RGB", (cols * (3 * size + 8), len(rows) * (size + 8)), (255, 0, 255))
    for r, (before, after) in enumerate(rows):
        for k in range(cols):
            x, y = k * (3 * size + 8), r * (size + 8)
            for j, im in enumerate((originals[k], before[k], after[k])):
                sheet.paste(im.resize((size, size), Image.Resampling.NEAREST), (x + j * size, y))
    sheet.save(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/refiner")
    p.add_argument("--vq", default="checkpoints/vq")
    p.add_argument("--n", type=int, default=1000, help="held-out scenes")
    p.add_argument("--rates", default="0,0.02,0.05,0.1", help="corruption rates (fractions of codes)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's shipped count)")
    p.add_argument("--seed", type=int, default=0, help="seeds the corruption and the refiner's noise")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--timing-runs", type=int, default=30)
    p.add_argument("--no-judge", action="store_true", help="skip judge agreement (the slowest part)")
    p.add_argument("--grid", help="also write clean | before | after triples, one row per rate, to this PNG")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    vq = VQTokenizer.from_pretrained(args.vq)
    ref = Refiner.from_pretrained(args.checkpoint)
    steps = args.steps or ref.config.steps
    tr = ref.config.training
    print(f"refiner {args.checkpoint}: {sum(q.numel() for q in ref.parameters()) / 1e6:.2f}M params, "
          f"{steps} steps {ref.timesteps(steps)} (shipped {ref.config.steps}); trained {tr.get('step', '?')} steps / "
          f"{tr.get('images_seen', '?')} crops / {tr.get('wall_seconds', 0) / 60:.0f} min on {tr.get('vq', '?')}; "
          f"vq {args.vq}; bf16 {bf16_fast_on_cpu()}; threads {torch.get_num_threads()}")

    scenes = held_out_scenes(args.n)
    originals = [render(s) for s in scenes]
    ids = torch.cat([vq.encode(originals[i:i + args.batch_size]) for i in range(0, len(originals), args.batch_size)])
    judge, compare = (None, "--no-judge") if args.no_judge else load_judge()
    sign = np.array([s.sign is not None for s in scenes])
    print(f"scenes {len(scenes)} held-out ({sign.sum()} with signs)")

    rows, grid_rows, summary = [], [], {}
    t_refine = 0.0
    for k, rate in enumerate(rates):
        bad = corrupt_codes(ids, rate, torch.Generator().manual_seed(args.seed * 1000 + k), codebook_size=vq.codebook_size)
        before, after = [], []
        for i in range(0, len(bad), args.batch_size):
            dec = vq.decode(bad[i:i + args.batch_size])
            t0 = time.perf_counter()
            after += ref.refine(dec, steps=steps, seed=args.seed + i)
            t_refine += time.perf_counter() - t0
            before += dec
        b, a = scores(scenes, originals, before, judge, compare), scores(scenes, originals, after, judge, compare)
        summary[rate] = (b, a)
        grid_rows.append((before, after))
        rows.append(rate)
    if args.grid:
        save_grid(args.grid, originals, grid_rows)
        print(f"grid {args.grid}")

    jb = lambda r: "   n/a" if r is None else f"{r.mean():6.1%}"   # noqa: E731
    print(f"\n{'rate':>5} | {'PSNR before':>11} {'after':>7} {'gain':>6} | {'SSIM before':>11} {'after':>7} | "
          f"{'judge before':>12} {'after':>7} | {'sign PSNR before':>16} {'after':>7}")
    for rate in rows:
        b, a = summary[rate]
        sb = b["psnr"][sign].mean() if sign.any() else float("nan")
        sa = a["psnr"][sign].mean() if sign.any() else float("nan")
        print(f"{rate:5.0%} | {b['psnr'].mean():11.2f} {a['psnr'].mean():7.2f} {a['psnr'].mean() - b['psnr'].mean():+6.2f} | "
              f"{b['ssim'].mean():11.4f} {a['ssim'].mean():7.4f} | {jb(b['judge']):>12} {jb(a['judge']):>7} | "
              f"{sb:16.2f} {sa:7.2f}")
    if judge is not None:
        ok_orig = np.array([bool(compare(s.to_dict(), judge(o))["exact"]) for s, o in zip(scenes, originals)])
        print(f"judge on the clean renders: {ok_orig.mean():.1%} (its ceiling)")
    n_pics = len(rows) * len(scenes)
    print(f"\nrefine, batch {args.batch_size}: {t_refine / max(1, n_pics) * 1e3:.1f} ms/picture over {n_pics} pictures")

    # timing: PIL in → PIL out at batch 1, the pipeline's path
    dec = vq.decode(ids[:max(1, min(len(ids), args.timing_runs))])
    ms = {}
    for s in sorted({1, 2, 3, 4, steps}):
        for _ in range(3):
            ref.refine(dec[0], steps=s)
        t = []
        for i in range(args.timing_runs):
            t0 = time.perf_counter()
            ref.refine(dec[i % len(dec)], steps=s, seed=i)
            t.append(time.perf_counter() - t0)
        ms[s] = statistics.median(t) * 1e3
        print(f"refine, batch 1, {s} step{'s' if s > 1 else ' '}: {ms[s]:6.1f} ms/picture median "
              f"(p90 {np.percentile(t, 90) * 1e3:.1f}){'   ← shipped' if s == ref.config.steps else ''} "
              f"(CPU, {torch.get_num_threads()} threads)")

    # the targets, for reading; never an exit status
    print("\ntargets:")
    if 0.05 in summary:
        b, a = summary[0.05]
        gain = a["psnr"].mean() - b["psnr"].mean()
        print(f"  PSNR gain at 5 %       {gain:+.2f} dB (want ≥ +{TARGET_GAIN_DB:.0f})  {'met' if gain >= TARGET_GAIN_DB else 'NOT met'}")
    if 0.0 in summary:
        b, a = summary[0.0]
        gain = a["psnr"].mean() - b["psnr"].mean()
        print(f"  PSNR change at 0 %     {gain:+.2f} dB (want ≥ 0)  {'met' if gain >= 0 else 'NOT met'}")
    if judge is not None:
        worse = [f"{r:.0%}" for r in rows if summary[r][1]["judge"].mean() < summary[r][0]["judge"].mean()]
        print(f"  judge agreement        {'never lower after refining' if not worse else 'lower at ' + ', '.join(worse)}")
    shipped_ms = ms[steps]
    print(f"  time per picture       {shipped_ms:.1f} ms at {steps} steps (want ≤ {TARGET_MS:.0f} on 2 CPU cores)  "
          f"{'met' if shipped_ms <= TARGET_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
