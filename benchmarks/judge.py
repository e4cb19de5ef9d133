"""Benchmark the judge: how exactly it reads held-out renders back into scenes, clean and degraded.

    /work/venv/bin/python benchmarks/judge.py [--n 500] [--sign-n 300] [--start 0] [--show 3]

Scenes are the evaluation split (`sample_scene(eval_seed(i))`, start ≤ i < start + n) plus a
sign-heavy set: the next held-out scenes that carry a sign, until there are `--sign-n` of them
(words are the hardest part to read). Each picture is judged clean and after each degradation of
mmgen.eval.degrade (blur σ = 0.7 px, Gaussian noise σ = 8/255, JPEG quality 60, and all three
in that order). Prints exact-scene accuracy (background, every object attribute, the sign and
its word all right, nothing missing or extra) and per-attribute accuracy, plus judge time per
picture. Exits 1 if a target is missed: ≥ 99.5 % exact clean, ≥ 97 % under each single
degradation.
"""
from __future__ import annotations

import argparse
import sys
import time

from mmgen.eval.degrade import blur, jpeg, noise
from mmgen.eval.judge import compare, judge, summarize
from mmgen.world.render import render
from mmgen.world.scene import eval_seed, sample_scene

BLUR_SIGMA = 0.7
NOISE_SIGMA = 8 / 255
JPEG_QUALITY = 60
CONDITIONS = {
    "clean": lambda img, i: img,
    f"blur {BLUR_SIGMA}": lambda img, i: blur(img, BLUR_SIGMA),
    "noise 8/255": lambda img, i: noise(img, NOISE_SIGMA, rng=i),
    f"jpeg q{JPEG_QUALITY}": lambda img, i: jpeg(img, JPEG_QUALITY),
    "all three": lambda img, i: jpeg(noise(blur(img, BLUR_SIGMA), NOISE_SIGMA, rng=i), JPEG_QUALITY),
}
TARGET_CLEAN, TARGET_DEGRADED = 0.995, 0.97
COLUMNS = [("exact", "exact"), ("bg", "background"), ("obj", "object_found"), ("shape", "object_shape"),
           ("color", "object_color"), ("size", "object_size"), ("x-obj", "extra_objects"),
           ("sign", "sign_present"), ("word", "sign_word"), ("s-col", "sign_color"),
           ("plaque", "sign_plaque"), ("band", "sign_band"), ("x-sign", "extra_sign")]


def scene_sets(n: int, sign_n: int, start: int = 0) -> dict[str, list[tuple[int, object]]]:
    general = [(i, sample_scene(eval_seed(i))) for i in range(start, start + n)]
    signs, i = [], start + n
    while len(signs) < sign_n:
        s = sample_scene(eval_seed(i))
        if s.sign is not None:
            signs.append((i, s))
        i += 1
    return {f"held-out scenes (n={n})": general, f"sign scenes (n={sign_n})": signs}


def run_set(scenes, show: int) -> tuple[dict[str, dict], float, float]:
    """Accuracy per condition, and judge time per picture in ms: (wall, CPU of this process)."""
    results, judge_s, judge_cpu, judged = {}, 0.0, 0.0, 0
    for cond, degrade in CONDITIONS.items():
        reports, failures = [], []
        for i, scene in scenes:
            img = degrade(render(scene), i)
            t0, c0 = time.perf_counter(), time.process_time()
            found = judge(img)
            judge_s += time.perf_counter() - t0
            judge_cpu += time.process_time() - c0
            judged += 1
            r = compare(scene.to_dict(), found)
            reports.append(r)
            if not r["exact"]:
                failures.append((i, scene.to_dict(), found))
        results[cond] = summarize(reports)
        for i, want, got in failures[:show]:
            print(f"  [{cond}] eval_seed({i})\n    want {want}\n    got  {got}")
    return results, 1000 * judge_s / max(judged, 1), 1000 * judge_cpu / max(judged, 1)


def print_table(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}: accuracy (%)")
    print(f"{'condition':<13}" + "".join(f"{h:>8}" for h, _ in COLUMNS))
    for cond, acc in results.items():
        cells = []
        for _, key in COLUMNS:
            v = acc[key]
            cells.append(f"{'-':>8}" if v != v else f"{100 * v:8.1f}")   # NaN: nothing to count
        print(f"{cond:<13}" + "".join(cells))
    print("(x-obj, x-sign: % of scenes with an extra object / a sign that is not there — lower is better)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="held-out scenes")
    p.add_argument("--sign-n", type=int, default=300, help="extra held-out scenes that all have a sign")
    p.add_argument("--start", type=int, default=0, help="first held-out scene index")
    p.add_argument("--show", type=int, default=3, help="failures to print per condition")
    args = p.parse_args(argv)

    ok = True
    times = []
    for title, scenes in scene_sets(args.n, args.sign_n, args.start).items():
        results, wall_ms, cpu_ms = run_set(scenes, args.show)
        times.append((wall_ms, cpu_ms, len(scenes)))
        print_table(title, results)
        for cond, acc in results.items():
            if cond == "all three":
                continue    # reported for information, no target
            target = TARGET_CLEAN if cond == "clean" else TARGET_DEGRADED
            if acc["exact"] < target:
                ok = False
                print(f"  MISSED: {cond} exact {100 * acc['exact']:.1f} % < {100 * target:.1f} %")
    n_all = sum(t[2] for t in times)
    wall = sum(t[0] * t[2] for t in times) / n_all
    cpu = sum(t[1] * t[2] for t in times) / n_all
    print(f"\njudge time per picture: {wall:.2f} ms wall, {cpu:.2f} ms CPU (mean over all judged pictures)")
    print(f"targets (exact ≥ {100 * TARGET_CLEAN:.1f} % clean, ≥ {100 * TARGET_DEGRADED:.0f} % per degradation): "
          + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
