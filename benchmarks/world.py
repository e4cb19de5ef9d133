"""How fast the procedural world makes training data: rendered conversations per second, one core.

    python benchmarks/world.py [--seconds 3] [--split train|eval]

Each conversation is sampled (prompts, edits, questions, scenes) and every one of its pictures is
rendered, as a data loader would. Pure Python + Pillow, one process, so one core. Prints figures;
never passes or fails on a time.
"""
from __future__ import annotations

import argparse
import time

from mmgen.world import render
from mmgen.world.conversation import sample_conversation

WARMUP_CONVERSATIONS = 20        # fonts and caches load on first use


def measure(seconds: float, split: str) -> dict[str, float]:
    for s in range(WARMUP_CONVERSATIONS):
        for scene in sample_conversation(s, split).images():
            render(scene)
    n = turns = images = 0
    sample_s = render_s = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        conv = sample_conversation(WARMUP_CONVERSATIONS + n, split)
        t1 = time.perf_counter()
        for scene in conv.images():
            render(scene)
        t2 = time.perf_counter()
        sample_s, render_s = sample_s + t1 - t0, render_s + t2 - t1
        n, turns, images = n + 1, turns + len(conv.turns), images + len(conv.images())
    wall = time.perf_counter() - start
    return {"conversations": n, "per_s": n / wall, "turns_per_conv": turns / n, "images_per_conv": images / n,
            "sample_ms": 1e3 * sample_s / n, "render_ms": 1e3 * render_s / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--split", choices=("train", "eval"), default="train")
    args = ap.parse_args()
    r = measure(args.seconds, args.split)
    print(f"world ({args.split}): {r['per_s']:.0f} rendered conversations/s on one core "
          f"({r['conversations']} in {args.seconds:g} s; {r['turns_per_conv']:.1f} turns and "
          f"{r['images_per_conv']:.1f} pictures each; {r['sample_ms']:.2f} ms sampling + "
          f"{r['render_ms']:.2f} ms rendering per conversation)")


if __name__ == "__main__":
    main()
