"""How fast pictures are drawn: prefill, per-step time, whole-picture latency, first preview,
cache vs no cache, speculative vs plain, acceptance, memory. Batch 1 and 4; CPU (and CUDA).

    python benchmarks/generate.py                       # shipped checkpoints
    python benchmarks/generate.py --checkpoints PATH --repeats 5 --skip-nocache
    python benchmarks/generate.py --draft-k 4 8 12      # speculative variants at several draft lengths
    python benchmarks/generate.py --weights native int8 # also plain and speculative on int8 engine weights

Pictures are sampled with a session's default settings (temperature, guidance), as a user gets them.
Ratios are measured side by side in one run, alternating the variants each repeat, because
this machine is noisy. Prints figures; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

import mmgen
from mmgen.engine import WEIGHTS
from mmgen.generate import engine_weights, generate_ids
from mmgen.session import Settings, preview_image
from mmgen.neighbours import NeighbourTable
from mmgen.speculative import CopyDrafter, ModelDrafter, NeighbourDrafter, SpeculationStats
from mmgen.stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Turn

PROMPT = "draw a red circle at the top left and a blue star at the bottom right"


def prompts(model, text=PROMPT):
    conv = Conversation((Turn("user", text),))
    return (model.stream.encode(conv, generation_prompt=True).ids,
            model.stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids)


def one_picture(model, *, n=1, backend="engine", drafter=None, seed=0, draft_k=4) -> dict:
    """Draw one turn; time prefill, first preview (row 1 decoded) and the whole picture."""
    cond, uncond = prompts(model)
    stats = SpeculationStats()
    t0 = time.perf_counter()
    first_step = first_preview = None
    codes, steps = [], 0
    config = Settings(picture="always", draft_k=draft_k).sampling()
    for step in generate_ids(model.lm, model.stream, cond, uncond, config=config, n=n, seed=seed,
                             backend=backend, drafter=drafter, stats=stats):
        steps += 1
        if first_step is None:
            first_step = time.perf_counter() - t0          # prefill + the first sampled id
        t = step.tokens[0]
        if model.stream.is_image_id(t):
            codes.append(t - model.stream.image_offset)
            if len(codes) == IMAGE_SIDE and first_preview is None:
                preview_image(model.vq, codes)             # what a chat shows: session.preview_image
                first_preview = time.perf_counter() - t0
    model.vq.decode(torch.tensor(codes).view(1, IMAGE_SIDE, IMAGE_SIDE))
    total = time.perf_counter() - t0
    return {"total": total, "prefill": first_step, "first_preview": first_preview, "steps": steps,
            "per_step": (total - first_step) / max(1, steps - 1), "stats": stats, "codes": len(codes)}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                    help="the transformer's dtype (default: what mmgen.load picks for this machine)")
    ap.add_argument("--weights", choices=list(WEIGHTS), nargs="+", default=None,
                    help="how the engine holds the projections (default: what mmgen.load picks); a second "
                         "value adds its plain and speculative variants, on a second copy of the model")
    ap.add_argument("--skip-nocache", action="store_true", help="the uncached variant is slow; skip it")
    ap.add_argument("--draft-k", type=int, nargs="+", default=[Settings.draft_k],
                    help="codes drafted per verify pass; several values give a variant each")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    kinds = args.weights or [None]
    models = [mmgen.load(args.checkpoints, device=args.device, dtype=dtype, weights=w) for w in kinds]
    model = models[0]
    print(f"model {model.name}, device {model.device}, dtype {next(model.lm.parameters()).dtype}, "
          f"engine weights {' and '.join(engine_weights(m.lm) for m in models)}, "
          f"threads {torch.get_num_threads()}, draft model: {'yes' if model.draft is not None else 'no'}")
    variants = {"plain (engine, static cache)": dict(backend="engine"),
                "transformers DynamicCache": dict(backend="hf")}
    drafters = {"copy": CopyDrafter}
    if isinstance(model.draft, NeighbourTable):
        drafters["neighbours"] = lambda: NeighbourDrafter(model.draft)
    elif model.draft is not None:
        drafters["draft model"] = lambda: ModelDrafter(model.draft)
    for k in args.draft_k:
        for name, make in drafters.items():
            variants[f"speculative: {name}, k={k}"] = dict(drafter=make, draft_k=k)
    for other, w in zip(models[1:], kinds[1:]):          # the same decoding with other engine weights
        variants[f"plain, {w} weights"] = dict(backend="engine", model=other)
        name, make = list(drafters.items())[-1]
        variants[f"speculative: {name}, k={args.draft_k[0]}, {w}"] = dict(drafter=make, draft_k=args.draft_k[0],
                                                                          model=other)
        one_picture(other)
    if not args.skip_nocache:
        variants["no cache (engine recomputes all)"] = dict(backend="recompute")
    one_picture(model)                                   # warm-up: engine built, caches allocated
    for n in (1, 4):
        results = {name: [] for name in variants}
        for rep in range(args.repeats):
            for name, kw in variants.items():           # alternate the variants every repeat
                kw = dict(kw)
                if "drafter" in kw:
                    kw["drafter"] = kw["drafter"]()
                if n > 1 and name.startswith("no cache"):
                    continue
                results[name].append(one_picture(kw.pop("model", model), n=n, seed=rep, **kw))
        print(f"\nbatch {n} ({n} picture{'s' if n > 1 else ''} per prompt, CFG on: {2 * n} rows), median of {args.repeats}")
        print(f"{'variant':<36} {'picture s':>9} {'first preview s':>15} {'prefill ms':>10} {'step ms':>8} "
              f"{'codes/s':>8} {'accept':>7} {'mean len':>8} {'words/pass':>10}")
        base = median(results["plain (engine, static cache)"], "total")
        for name, rows in results.items():
            if not rows:
                continue
            s = [r["stats"] for r in rows]
            accept = statistics.mean(x.acceptance_rate for x in s) if s[0].rounds else float("nan")
            mean_len = statistics.mean(x.mean_accepted_length for x in s) if s[0].rounds else float("nan")
            words = (statistics.mean(x.word_tokens / x.word_rounds for x in s)    # words per verify pass
                     if s[0].word_rounds else float("nan"))
            total = median(rows, "total")
            print(f"{name:<36} {total:9.3f} {median(rows, 'first_preview'):15.3f} {1e3 * median(rows, 'prefill'):10.1f} "
                  f"{1e3 * median(rows, 'per_step'):8.2f} {n * IMAGE_TOKENS / total:8.0f} {accept:7.2f} {mean_len:8.2f} "
                  f"{words:10.2f}"
                  f"   ({base / total:.2f}x plain)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory: {peak:.0f} MB")
    if torch.cuda.is_available():
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
