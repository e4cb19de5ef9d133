"""The layout plans of the generation benchmark's prompts, graded without drawing: words guidance.

    python benchmarks/plans.py [--checkpoints checkpoints] [--n 50] [--word-cfg 1 1.5 2 3]
                               [--categories count_and_other,two_objects] [--split eval]

Before a picture the transformer writes its plan ("Here it is: a red triangle in the top left and a
blue circle in the center on a white background."), and the picture follows its plan almost always
(`mmgen eval`'s "picture matches plan", 0.997 on the shipped model): what the generation benchmark
measures is mostly the plan. This writes only the plan — the reply's words up to <image>, decoded
as a chat decodes them (generate.generate_ids, greedy words) — and grades it as `mmgen eval` grades
its plans (language.read_description, then prompts.spec_matches), for each words-guidance scale
(the setting word_cfg; 1 is none) on the same prompts. About 0.3 s a prompt on one thread, so a
scale is chosen on hundreds of prompts where drawing them would take an hour.
"""
from __future__ import annotations

import argparse
import time

import torch

from mmgen.eval.benchmark import GEN_CATEGORIES, SPLITS
from mmgen.generate import generate_ids
from mmgen.pipeline import Pipeline, load
from mmgen.settings import Settings
from mmgen.stream import Conversation, Turn
from mmgen.world.language import read_description
from mmgen.world.prompts import prompt_for, spec_matches


def plan(model, pipeline: Pipeline, text: str, settings: Settings) -> str:
    """The reply's words to `text` as the first message of a chat, up to the picture they open."""
    cond, uncond, _ = pipeline._prompt(Conversation((Turn("user", text),)), settings.max_words)
    stream, words = model.stream, []
    for step in generate_ids(model.lm, stream, cond, uncond, config=settings.sampling(), seed=0):
        t = step.tokens[0]
        if t in (stream.image_start, stream.eot):
            break
        words.append(t)
    return stream.text.decode(words).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", default="checkpoints", help="folder with vq/ and lm/")
    ap.add_argument("--n", type=int, default=50, help="prompts per category (the benchmark's first n)")
    ap.add_argument("--word-cfg", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0], help="scales to compare")
    ap.add_argument("--categories", default=",".join(GEN_CATEGORIES), help="comma-separated")
    ap.add_argument("--split", default="eval", choices=SPLITS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--show", type=int, default=2, help="failed plans to print per category and scale")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.checkpoints)
    pipeline = Pipeline(model)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    right = {scale: 0 for scale in args.word_cfg}
    began = time.perf_counter()
    print(f"plans matching their prompt, {args.n} per category, {args.split} split")
    print(f"{'category':20s}" + "".join(f"{f'word_cfg {s:g}':>14s}" for s in args.word_cfg))
    for category in categories:
        prompts = [prompt_for(i, category, args.split) for i in range(args.n)]
        shares, failures = [], {}
        for scale in args.word_cfg:
            settings = Settings(word_cfg=scale)
            ok = 0
            for p in prompts:
                text = plan(model, pipeline, p.text, settings)
                scene = read_description(text)
                if scene is not None and all(spec_matches(p.spec, scene).values()):
                    ok += 1
                else:
                    failures.setdefault(scale, []).append((p.text, text))
            right[scale] += ok
            shares.append(ok / len(prompts))
        print(f"{category:20s}" + "".join(f"{s:14.2f}" for s in shares), flush=True)
        for scale, cases in failures.items():
            for prompt, text in cases[:args.show]:
                print(f"    word_cfg {scale:g}: {prompt!r} -> {text!r}")
    total = args.n * len(categories)
    print(f"{'overall':20s}" + "".join(f"{right[s] / total:14.3f}" for s in args.word_cfg))
    print(f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
