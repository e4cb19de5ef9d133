"""How often one prompt's pictures are what it asks, judged, refined and not, over many seeds.

    python benchmarks/prompt_rate.py "a yellow star on a black background" --background black --objects yellow:star
    python benchmarks/prompt_rate.py "a blue square in the top left" --objects blue:square --checkpoints runs/ck

A single seed says little about a model (a sampled picture can miss); this draws `--seeds` chats
with `--n` pictures each, as a person gets them (with the refiner) and without it, and counts the
pictures whose judged background and (colour, shape) of every object are the ones given. Prints
figures; asserts nothing.
"""
from __future__ import annotations

import argparse

import mmgen
from mmgen.eval.judge import judge


def is_right(image, background: str | None, objects: list[tuple[str, str]]) -> bool:
    found = judge(image.convert("RGB"))
    if background is not None and found["background"] != background:
        return False
    return sorted((o["color"], o["shape"]) for o in found["objects"]) == sorted(objects)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("--objects", nargs="+", required=True, help="colour:shape of each object the picture must hold")
    ap.add_argument("--background", default=None, help="the background colour it must have (default: any)")
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--n", type=int, default=2, help="pictures per chat")
    args = ap.parse_args()
    objects = [tuple(o.split(":", 1)) for o in args.objects]
    model = mmgen.load(args.checkpoints)
    print(f"{args.prompt!r}, {args.seeds} seeds × {args.n} pictures")
    for refine in (True, False):
        right = total = 0
        for seed in range(args.seeds):
            reply = model.chat(seed=seed, refine=refine).send(args.prompt, picture="always", n=args.n)
            for image in reply.images:
                right += is_right(image, args.background, objects)
                total += 1
        print(f"  {'refined' if refine else 'unrefined':10s} {right}/{total} right")


if __name__ == "__main__":
    main()
