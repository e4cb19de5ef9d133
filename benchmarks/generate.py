"""How fast pictures are drawn: prefill, per-step time, whole-picture latency, first preview,
cache vs no cache, speculative vs plain, acceptance, memory. Batch 1 and 4; CPU (and CUDA).

    python benchmarks/generate.py                       # shipped checkpoints
    python benchmarks/generate.py --checkpoints PATH --repeats 5 --skip-nocache
    python benchmarks/generate.py --draft-k 4 8 12      # speculative variants at several draft lengths
    python benchmarks/generate.py --weights native int8 # also plain and speculative on int8 engine weights
    python benchmarks/generate.py --previews-only --repeats 5   # streamed vs unstreamed only
    python benchmarks/generate.py --word-cfg 1.5 1      # also the fastest speculation with the plan unguided

Pictures are sampled with a session's default settings (temperature, guidance), as a user gets them.
Streamed vs unstreamed: the same picture (same seed, plain engine) drawn with no previews, with a
preview per row as a chat streams them (previews.PreviewCanvas: the tokenizer's preview table when
it has one), and with today's decoder previews for comparison; each against unstreamed.
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
from mmgen.previews import PreviewCanvas, preview_image
from mmgen.settings import Settings
from mmgen.neighbours import NeighbourTable
from mmgen.speculative import CopyDrafter, ModelDrafter, NeighbourDrafter, SpeculationStats
from mmgen.stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Turn

PROMPT = "draw a red circle at the top left and a blue star at the bottom right"


def prompts(model, text=PROMPT):
    conv = Conversation((Turn("user", text),))
    return (model.stream.encode(conv, generation_prompt=True).ids,
            model.stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids)


PREVIEW_MODES = ("first", "none", "all", "decoder")


def preview_canvas(model, previews: str) -> PreviewCanvas | None:
    """What draws the previews: "all" as a chat streams them, "decoder" the same without the preview
    table (the decoder previews a tokenizer without one gets), else none (the first preview is
    timed on its own with preview_image)."""
    if previews not in ("all", "decoder"):
        return None
    canvas = PreviewCanvas(model.vq)
    if previews == "decoder":
        canvas.table = None
    return canvas


def one_picture(model, *, n=1, backend="engine", drafter=None, seed=0, draft_k=4, previews="first",
                word_cfg=Settings.word_cfg) -> dict:
    """Draw one turn; time prefill, first preview and the whole picture. previews (PREVIEW_MODES):
    "first" only the first row's preview, "none" no previews (a picture sent, not streamed), "all"
    a preview per row as a chat streams them, "decoder" the same with decoder previews."""
    cond, uncond = prompts(model)
    stats = SpeculationStats()
    t0 = time.perf_counter()
    first_step = first_preview = None
    codes, steps = [], 0
    canvas = preview_canvas(model, previews)
    shown = 0.0                                            # seconds spent on pixels: previews and the final decode
    config = Settings(picture="always", draft_k=draft_k, word_cfg=word_cfg).sampling()
    for step in generate_ids(model.lm, model.stream, cond, uncond, config=config, n=n, seed=seed,
                             backend=backend, drafter=drafter, stats=stats):
        steps += 1
        if first_step is None:
            first_step = time.perf_counter() - t0          # prefill + the first sampled id
        t = step.tokens[0]
        if model.stream.is_image_id(t):
            codes.append(t - model.stream.image_offset)
            if canvas is not None and len(codes) % IMAGE_SIDE == 0:
                t1 = time.perf_counter()
                canvas.image(codes)                        # what a chat streams: previews.PreviewCanvas
                shown += time.perf_counter() - t1
            elif previews == "first" and len(codes) == IMAGE_SIDE:
                preview_image(model.vq, codes)             # what a chat shows first: previews.preview_image
            if len(codes) == IMAGE_SIDE and first_preview is None:
                first_preview = time.perf_counter() - t0
    # the final picture; a streamed one was decoded by its last preview (as Pipeline.decode reuses it)
    t1 = time.perf_counter()
    if canvas is None or canvas.decoded(codes) is None:
        model.vq.decode(torch.tensor(codes).view(1, IMAGE_SIDE, IMAGE_SIDE))
    shown += time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {"total": total, "pixels": shown, "prefill": first_step, "first_preview": first_preview, "steps": steps,
            "per_step": (total - first_step) / max(1, steps - 1), "stats": stats, "codes": len(codes)}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def streamed_vs_unstreamed(model, repeats: int) -> None:
    """Per picture: unstreamed, streamed (a preview per row) and streamed with decoder previews,
    alternating every repeat on the same seed; ratios are medians of each repeat's own ratio."""
    modes = {"unstreamed (no previews)": "none", "streamed (preview per row)": "all",
             "streamed, decoder previews": "decoder"}
    rows = {name: [] for name in modes}
    for rep in range(repeats):
        for name, mode in modes.items():
            rows[name].append(one_picture(model, seed=rep, previews=mode))
    table = "table" if model.vq.preview_patches is not None else "none: decoder previews"
    print(f"\nstreamed vs unstreamed (plain engine, batch 1, preview table: {table}), median of {repeats}")
    print("pixels s: the previews and the final decode (a streamed picture reuses its last preview's decode); "
          "by pixels: the unstreamed picture plus this variant's extra pixel time, less noisy than the whole")
    print(f"{'variant':<30} {'picture s':>9} {'pixels s':>9} {'vs unstreamed':>14} {'by pixels':>10}")
    base = rows["unstreamed (no previews)"]
    for name, runs in rows.items():
        ratio = statistics.median(r["total"] / b["total"] for r, b in zip(runs, base))
        extra = statistics.median(r["pixels"] - b["pixels"] for r, b in zip(runs, base))
        by_pixels = 1 + extra / median(base, "total")
        print(f"{name:<30} {median(runs, 'total'):9.3f} {median(runs, 'pixels'):9.3f} {ratio:13.3f}x "
              f"{by_pixels:9.3f}x")


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
    ap.add_argument("--previews-only", action="store_true", help="only streamed vs unstreamed")
    ap.add_argument("--draft-k", type=int, nargs="+", default=[Settings.draft_k],
                    help="codes drafted per verify pass; several values give a variant each")
    ap.add_argument("--word-cfg", type=float, nargs="+", default=[Settings.word_cfg],
                    help="guidance on the plan (the setting word_cfg) for every variant; further values "
                         "add the last speculative variant at each")
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
    for scale in args.word_cfg[1:]:                      # the plan's guidance: a twin prefill, a pass a word
        name, make = list(drafters.items())[-1]
        variants[f"speculative: {name}, k={args.draft_k[0]}, word_cfg {scale:g}"] = dict(
            drafter=make, draft_k=args.draft_k[0], word_cfg=scale)
    if not args.skip_nocache:
        variants["no cache (engine recomputes all)"] = dict(backend="recompute")
    one_picture(model)                                   # warm-up: engine built, caches allocated
    if args.previews_only:
        streamed_vs_unstreamed(model, args.repeats)
        return 0
    for n in (1, 4):
        results = {name: [] for name in variants}
        for rep in range(args.repeats):
            for name, kw in variants.items():           # alternate the variants every repeat
                kw = dict(kw)
                if "drafter" in kw:
                    kw["drafter"] = kw["drafter"]()
                if n > 1 and name.startswith("no cache"):
                    continue
                kw.setdefault("word_cfg", args.word_cfg[0])
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
    streamed_vs_unstreamed(model, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory: {peak:.0f} MB")
    if torch.cuda.is_available():
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
