"""What int8 and fp16 weights cost the transformer: held-out loss, agreement and speed of one pass.

    python benchmarks/quantization.py                  # shipped checkpoints, 48 held-out conversations
    python benchmarks/quantization.py --n 96 --threads 2

Every variant scores the same held-out conversations (the training run's validation set: the
first held-out world conversations) through the decoding engine, teacher-forced CHUNK tokens a
pass (few rows, as in decoding, so int8 weights are the ones used): the mean loss on the
assistant's words and on its picture codes, each over its own slice of the vocabulary as in
training (train/loss.py); how often each variant's likeliest token is the reference's; and
KL(reference ‖ variant) per token. The reference is the engine with fp32 activations on the
shipped (bf16) weights. Then one decoding pass, timed side by side: a picture's step (2 rows,
CFG), its verify pass (2 rows × 9 tokens) and a batch of 4's (8 rows × 9), each with the whole
output layer and with the codes' rows alone (engine.step's `vocab`, as generate.py asks inside
a picture). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import mmgen
from mmgen.data import validation_conversations
from mmgen.engine import Engine, fp16_available, int8_available

VARIANTS = {"fp32": dict(dtype=torch.float32), "bf16": dict(dtype=torch.bfloat16),
            "int8": dict(dtype=torch.float32, weights="int8"), "int8+bf16": dict(dtype=torch.bfloat16, weights="int8"),
            "fp16": dict(dtype=torch.float32, weights="fp16")}


def held_out(model, n: int) -> list:
    return [model.stream.encode(c) for c in validation_conversations(model.vq.encode, n)]


CHUNK = 8      # tokens per scoring pass: as few rows as decoding steps have, so int8 weights are used


def score(engine: Engine, encoded, offset: int) -> list[dict]:
    """Per conversation: logits for the labelled next tokens, fed CHUNK tokens per pass."""
    rows = []
    for e in encoded:
        ids = torch.tensor([e.ids])
        parts = [engine.prefill(ids[:, :CHUNK], all_logits=True)]
        parts += [engine.step(ids[:, i:i + CHUNK]) for i in range(CHUNK, ids.shape[1], CHUNK)]
        logits = torch.cat(parts, 1)[0, :-1]                              # predicts ids[1:]
        target = ids[0, 1:]
        where = torch.tensor(e.loss_mask[1:])
        rows.append({"logits": logits[where], "target": target[where]})
    return rows


def summarise(rows, reference, offset: int) -> dict:
    out = {}
    for name, lo, hi in (("words", 0, offset), ("codes", offset, None)):
        nll, agree, kl, count = 0.0, 0, 0.0, 0
        for r, ref in zip(rows, reference):
            sel = (r["target"] >= offset) if name == "codes" else (r["target"] < offset)
            if not bool(sel.any()):
                continue
            lp = F.log_softmax(r["logits"][sel][:, lo:hi], -1)
            lq = F.log_softmax(ref["logits"][sel][:, lo:hi], -1)
            t = r["target"][sel] - lo
            nll += float(-lp.gather(1, t[:, None]).sum())
            agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
            kl += float((lq.exp() * (lq - lp)).sum())
            count += int(sel.sum())
        out[name] = {"loss": nll / count, "agree": agree / count, "kl": kl / count, "tokens": count}
    return out


def pass_time(engine: Engine, rows: int, new: int, repeats: int, vocab=None) -> float:
    ids = torch.randint(0, 4000, (rows, 300))
    engine.prefill(ids)
    step = torch.randint(0, 4000, (rows, new))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.step(step, vocab)
        times.append(time.perf_counter() - t)
        engine.length -= new
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--n", type=int, default=48, help="held-out conversations")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=30, help="timed passes per variant and size")
    ap.add_argument("--skip-loss", action="store_true", help="time the passes only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = mmgen.load(args.checkpoints, dtype=torch.float32)
    available = {"int8": int8_available(), "fp16": fp16_available()}
    variants = {k: v for k, v in VARIANTS.items() if available.get(v.get("weights"), True)}
    encoded = [] if args.skip_loss else held_out(model, args.n)
    offset = model.stream.image_offset
    engines = {k: Engine(model.lm, batch=8, max_len=2048, **kw) for k, kw in variants.items()}
    print(f"{args.n} held-out conversations; threads {torch.get_num_threads()}; reference: fp32 activations")
    reference = [] if args.skip_loss else score(engines["fp32"], encoded, offset)
    print(f"{'variant':<9} {'words loss':>10} {'agree':>7} {'KL':>8} {'codes loss':>10} {'agree':>7} {'KL':>8}")
    for name, engine in ({} if args.skip_loss else engines).items():
        s = summarise(score(engine, encoded, offset) if name != "fp32" else reference, reference, offset)
        w, c = s["words"], s["codes"]
        print(f"{name:<9} {w['loss']:10.4f} {w['agree']:7.4f} {w['kl']:8.5f} {c['loss']:10.4f} {c['agree']:7.4f} {c['kl']:8.5f}")
    print(f"\none pass after 300 tokens (median of {args.repeats}, variants alternated); 'codes only': the "
          f"output layer computes the picture codes' logits alone, as inside a picture")
    codes_only = (offset, model.stream.vocab_size)
    # a step of one picture (2 rows: CFG), its verify pass (k = 8), and a batch of 4's verify pass
    for rows, new in ((2, 1), (2, 9), (8, 9)):
        times = {f"{name}{suffix}": [] for name in engines for suffix in ("", ", codes only")}
        for _ in range(3):
            for name, engine in engines.items():
                times[name].append(pass_time(engine, rows, new, args.repeats // 3 or 1))
                times[f"{name}, codes only"].append(pass_time(engine, rows, new, args.repeats // 3 or 1, codes_only))
        base = statistics.median(times["fp32"])
        print(f"  {rows} rows × {new} new token{'s' if new > 1 else ''}:")
        for name, t in times.items():
            print(f"    {name:<22} {1e3 * statistics.median(t):7.2f} ms  ({base / statistics.median(t):.2f}x fp32)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
