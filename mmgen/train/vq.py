"""Train the image tokenizer (`mmgen/vq.py`) on scenes streamed from the procedural world.

    python -m mmgen.train.vq --out checkpoints/vq --minutes 60
    python -m mmgen.train.vq --out checkpoints/vq --resume          # carry on where it stopped
    accelerate launch -m mmgen.train.vq --out checkpoints/vq      # several processes / GPUs

Every image is rendered on the fly from a training seed (< EVAL_SEED_OFFSET), so data is
unlimited and never repeats; signs are over-sampled (`--sign-fraction`) because letters are what an
8 × 8-patch tokenizer gets wrong first. bf16 autocast on CPUs with native bf16 (several times faster
convs) and on CUDA; the quantizer itself always runs in fp32 (see `VQTokenizer.quantize`).

Loss = L1 + MSE on pixels (MSE is what PSNR measures, L1 keeps flat areas exact) + L1 on the
horizontal/vertical pixel differences (edges and glyph strokes) + the quantizer's commitment
loss (VQ only); pixels inside a sign's box weigh `--sign-weight` times more.

Writes into --out: config.json + model.safetensors (the EMA weights, bf16, replaced only when a
small held-out validation set gets a better PSNR) and trainer/ (fp32 weights, EMA, optimizer
state as safetensors + JSON: everything `--resume` needs; never pickle).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mmgen.train.pixel_trainer import (checkpoint, ema_update, shipped_model, should_stop, start,
                                       training_record)
from mmgen.vq import ENCODERS, PRESETS, VQConfig, VQTokenizer
from mmgen.world import render, sample_scene
from mmgen.world.render import sign_box
from mmgen.world.scene import EVAL_SEED_OFFSET, eval_seed

SIGN_MARGIN = 2          # px around a sign's box that still counts as the sign
VAL_SCENES = 96          # held-out scenes scored at every checkpoint (half with signs)
VAL_SEED_START = 500_000  # held-out seeds eval_seed(500 000 + i): disjoint from the benchmark's first 1 000
CONTENT_CROP_PROBABILITY = 0.85   # a crop is centred in an object or the sign this often
USAGE_WINDOW = 20        # steps over which the progress bar counts distinct codes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="checkpoints/vq", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="network size preset")
    p.add_argument("--quantizer", choices=["fsq", "vq"], help="override the preset's quantizer")
    p.add_argument("--fsq-levels", type=str, help="e.g. 8,8,8,6,5")
    p.add_argument("--vq-codebook-size", type=int)
    p.add_argument("--encoder", choices=list(ENCODERS), help="override the preset's encoder")
    p.add_argument("--decoder-from", metavar="CHECKPOINT",
                   help="start the decoder and codebook from this tokenizer (the encoder is new): the codes "
                        "that stay in use keep roughly what they draw, so a transformer made for that "
                        "checkpoint transfers")
    p.add_argument("--freeze-decoder", action="store_true",
                   help="with --decoder-from: keep its decoder and codebook exactly as they are")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from this shipped tokenizer (config and weights; a fresh optimizer)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="with --init-from: train the decoder only; the encoder and codebook stay exactly as "
                        "they are, so every picture keeps its codes and a transformer trained on them still fits")
    p.add_argument("--steps", type=int, default=100_000, help="stop after this many optimizer steps")
    p.add_argument("--minutes", type=float, default=0, help="stop after this much wall time (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr-ratio", type=float, default=0.05, help="cosine decay ends at lr × this")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--decay-steps", type=int, default=0, help="length of the cosine schedule (0 = --steps)")
    p.add_argument("--schedule-minutes", type=float, default=0,
                   help="run the cosine schedule over this much total training wall time (resumes included) "
                        "instead of over steps, and stop when it is spent: for a machine whose speed is not known")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped weights (0 = off)")
    p.add_argument("--crop", type=int, default=64,
                   help="train on crops this size (multiple of 8, aligned to the token grid; 0 = whole images)")
    p.add_argument("--sign-crop", type=float, default=0.0,
                   help="when a scene has a sign, centre its crop on the sign this often (else on any object or the sign)")
    p.add_argument("--sign-fraction", type=float, default=0.6, help="fraction of training scenes with a sign")
    p.add_argument("--sign-weight", type=float, default=4.0, help="loss weight of pixels in a sign's box")
    p.add_argument("--grad-weight", type=float, default=1.0, help="weight of the edge (pixel-difference) loss")
    p.add_argument("--mse-weight", type=float, default=1.0)
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--resume", action="store_true", help="continue from --out/trainer")
    p.add_argument("--no-progress", action="store_true")


# --- data --------------------------------------------------------------------------------------
def training_scene(index: int, seed: int, sign_fraction: float):
    """The index-th training scene: deterministic, from seeds below EVAL_SEED_OFFSET."""
    rng = random.Random((seed * 1_000_003 + index) % EVAL_SEED_OFFSET)
    want_sign = rng.random() < sign_fraction
    while True:   # sample_scene gives a sign 1/3 of the time; redraw until it matches
        scene = sample_scene(rng)
        if (scene.sign is not None) == want_sign:
            return scene


def to_batch(scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes → (pixels [B, 3, 128, 128] in [0, 1], sign mask [B, 1, 128, 128] of 0/1)."""
    x = torch.from_numpy(np.stack([np.asarray(render(s)) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    m = torch.zeros(len(scenes), 1, x.shape[2], x.shape[3])
    for i, s in enumerate(scenes):
        if s.sign is not None:
            x0, y0, x1, y1 = sign_box(s.sign)
            m[i, :, max(0, int(y0) - SIGN_MARGIN):int(math.ceil(y1)) + SIGN_MARGIN,
              max(0, int(x0) - SIGN_MARGIN):int(math.ceil(x1)) + SIGN_MARGIN] = 1
    return x, m


def content_crops(x: torch.Tensor, m: torch.Tensor, scenes, size: int, rng: random.Random, sign_crop: float = 0.0):
    """Crop each image to size × size at a multiple of 8 (so patches stay on the token grid),
    usually around an object or a piece of the sign: most of a whole picture is flat background
    that the network learns in the first minutes, so whole images waste most of the compute."""
    full = x.shape[-1]
    xs, ms = [], []
    for i, s in enumerate(scenes):
        boxes = [o.box for o in s.objects] + ([sign_box(s.sign)] if s.sign is not None else [])
        if s.sign is not None and rng.random() < sign_crop:
            boxes = [sign_box(s.sign)]
        if boxes and rng.random() < CONTENT_CROP_PROBABILITY:
            x0, y0, x1, y1 = rng.choice(boxes)
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        else:
            cx, cy = rng.uniform(0, full), rng.uniform(0, full)
        left = min(full - size, max(0, round((cx - size / 2) / 8) * 8))
        top = min(full - size, max(0, round((cy - size / 2) / 8) * 8))
        xs.append(x[i, :, top:top + size, left:left + size])
        ms.append(m[i, :, top:top + size, left:left + size])
    return torch.stack(xs), torch.stack(ms)


def val_batch() -> tuple[torch.Tensor, torch.Tensor]:
    scenes, i = [], 0
    while len(scenes) < VAL_SCENES:   # half with signs, half without
        s = sample_scene(eval_seed(VAL_SEED_START + i))
        i += 1
        n_sign = sum(t.sign is not None for t in scenes)
        if (s.sign is not None and n_sign < VAL_SCENES // 2) or (s.sign is None and len(scenes) - n_sign < VAL_SCENES // 2):
            scenes.append(s)
    return to_batch(scenes)


# --- loss --------------------------------------------------------------------------------------
def reconstruction_loss(y, x, mask, args) -> torch.Tensor:
    w = 1 + (args.sign_weight - 1) * mask             # [B, 1, H, W]
    l1 = ((y - x).abs() * w).mean()
    mse = ((y - x).square() * w).mean()
    # edges: match horizontal and vertical pixel differences, so strokes stay sharp
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]
    edge = ((dx(y) - dx(x)).abs() * w[..., :, 1:]).mean() + ((dy(y) - dy(x)).abs() * w[..., 1:, :]).mean()
    return l1 + args.mse_weight * mse + args.grad_weight * edge


def psnr(y, x) -> torch.Tensor:
    """Per-image PSNR in dB of [0, 1] images (y is clamped and rounded to 8 bits like a saved PNG)."""
    y = (y.clamp(0, 1) * 255).round() / 255
    mse = (y - x).square().flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def lr_at(step: int, args, elapsed: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to lr × min_lr_ratio over steps (or over wall time)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule_minutes > 0:
        t = min(1.0, elapsed / (args.schedule_minutes * 60))
    else:
        total = args.decay_steps or args.steps
        t = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_config(args) -> VQConfig:
    cfg = VQConfig.from_dict(PRESETS[args.preset].to_dict())
    if args.quantizer:
        cfg.quantizer = args.quantizer
    if args.fsq_levels:
        cfg.fsq_levels = tuple(int(v) for v in args.fsq_levels.split(","))
    if args.vq_codebook_size:
        cfg.vq_codebook_size = args.vq_codebook_size
    if args.encoder:
        cfg.encoder = args.encoder
    if args.decoder_from:       # everything but the encoder comes from there
        donor = VQConfig.from_dict(json.loads((Path(args.decoder_from) / "config.json").read_text()))
        cfg = VQConfig.from_dict({**donor.to_dict(), "encoder": cfg.encoder})
    cfg.training = {}
    return cfg


@torch.no_grad()
def evaluate(model, xv, mv, bf16: bool, device) -> dict:
    model.eval()
    ps, sign_ps, ids_all = [], [], []
    for i in range(0, len(xv), 32):
        x = xv[i:i + 32].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            y, ids, _ = model(x)
        p = psnr(y.float(), x)
        ps.append(p)
        ids_all.append(ids.flatten().cpu())
        m = mv[i:i + 32].to(device)
        # PSNR inside sign boxes only
        err = ((y.float().clamp(0, 1) - x).square() * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1)).clamp_min(1)
        sign_ps.append(10 * torch.log10(1 / err.clamp_min(1e-10))[m.flatten(1).sum(1) > 0])
    return {"psnr": torch.cat(ps).mean().item(), "sign_psnr": torch.cat(sign_ps).mean().item(),
            "codes": int(torch.cat(ids_all).unique().numel())}


def take_decoder(setup, donor_path: Path, resume: bool, freeze: bool) -> None:
    """Load the donor's decoder and quantizer (a fresh run; a resumed one has them already); with
    `freeze`, keep them fixed: no gradients, no EMA codebook updates, no dead-code re-seeding.
    (Frozen, a local encoder reached 23.9 dB in 8 minutes of training on 2 CPU cores: a decoder
    made for context-dependent codes cannot draw well from local ones without adapting.)"""
    donor = VQTokenizer.from_pretrained(donor_path)
    if donor.config.quantizer != "vq" or donor.codebook_size != setup.cfg.codebook_size:
        raise ValueError("needs a VectorQuantize tokenizer with the same codebook size")
    if not bool(donor.quantizer._codebook.initted):
        raise ValueError("its codebook was never initialised: it is an untrained checkpoint")
    keep = {k: v for k, v in donor.state_dict().items() if not k.startswith("encoder.")}
    for model in (setup.raw, setup.ema):
        if model is None:
            continue
        if not resume:
            own = model.state_dict()
            model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in keep.items()}})
        if not freeze:
            continue
        model.decoder.requires_grad_(False)
        freeze_codes(model)


def freeze_codes(model) -> None:
    """Fix the codebook: no gradients, no EMA codebook updates, no dead-code re-seeding."""
    model.quantizer.requires_grad_(False)
    model.quantizer.freeze_codebook = True


def freeze_encoder(setup) -> None:
    """Train only the decoder: the encoder and codebook of the --init-from tokenizer are kept, so
    encode() gives every picture the same codes as before (tests/test_vq.py)."""
    for model in (setup.raw, setup.ema):
        if model is None:
            continue
        model.encoder.requires_grad_(False)
        freeze_codes(model)


def check_arguments(args) -> str | None:
    """Why these flags cannot go together (or cannot start), or None when they can."""
    if args.freeze_decoder and not args.decoder_from:
        return "--freeze-decoder needs --decoder-from"
    if args.freeze_encoder and not args.init_from:
        return "--freeze-encoder needs --init-from (the tokenizer whose codes to keep)"
    if args.init_from and args.decoder_from:
        return "--init-from and --decoder-from: choose one"
    if args.decoder_from and not (Path(args.decoder_from) / "config.json").is_file():
        return f"--decoder-from {args.decoder_from}: no tokenizer there (config.json missing)"
    return None


def prepare_model(args, out: Path, info: dict):
    """`start`'s model, EMA and optimizer, with --decoder-from's decoder and --freeze-encoder
    applied; None, after saying why, when the run cannot start."""
    setup = start(args, out, info, config_from_dict=VQConfig.from_dict, build_config=build_config,
                  make_model=VQTokenizer)
    if setup is None:
        return None
    if args.decoder_from:
        try:
            take_decoder(setup, Path(args.decoder_from), resume=args.resume, freeze=args.freeze_decoder)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"--decoder-from {args.decoder_from}: {e}", file=sys.stderr)
            return None
    if args.freeze_encoder:
        freeze_encoder(setup)
    return setup


def describe_run(setup) -> None:
    cfg, acc = setup.cfg, setup.acc
    n_params = sum(p.numel() for p in setup.raw_params if p.requires_grad)
    if acc.is_main_process:
        print(f"vq: {n_params / 1e6:.2f}M trained params, {cfg.quantizer} codebook {cfg.codebook_size}, "
              f"device {setup.device}, bf16 {setup.bf16}, processes {acc.num_processes}, "
              f"threads {torch.get_num_threads()}", flush=True)


def training_batch(args, seen: int, setup) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's slice of the global batch after `seen` images (every process renders its
    own): pixels and sign masks, cropped with --crop, on the training device."""
    base = seen + setup.acc.process_index * args.batch_size
    scenes = [training_scene(base + i, args.seed, args.sign_fraction) for i in range(args.batch_size)]
    x, m = to_batch(scenes)
    if args.crop:
        x, m = content_crops(x, m, scenes, args.crop, random.Random(base * 7 + args.seed), args.sign_crop)
    return x.to(setup.device), m.to(setup.device)


def train_step(setup, args, x: torch.Tensor, m: torch.Tensor, lr: float):
    """One optimizer step at learning rate `lr`; returns (loss, reconstruction, ids)."""
    acc, opt = setup.acc, setup.opt
    for g in opt.param_groups:
        g["lr"] = lr
    with acc.autocast():
        y, ids, aux = setup.model(x)
    loss = reconstruction_loss(y.float(), x, m, args) + aux
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(setup.model.parameters(), 1.0)
    opt.step()
    return loss, y, ids


def save_and_report(setup, args, out: Path, info: dict, val_data, elapsed: float) -> None:
    """Score the shipped weights on the held-out batch, write the checkpoint (the model only when
    it beats the best so far) and print the figures. `info` already holds step and images seen."""
    from tqdm import tqdm

    shipped = shipped_model(setup)
    val = evaluate(shipped, *val_data, setup.bf16, setup.device)
    setup.raw.train()
    info.update(wall_seconds=round(elapsed, 1))
    record = training_record(setup, args, info, " ".join(["python -m mmgen.train.vq"] + sys.argv[1:]),
                             val_psnr=round(val["psnr"], 3), val_sign_psnr=round(val["sign_psnr"], 3),
                             val_codes_used=val["codes"])
    better = checkpoint(setup, out, shipped, record, info, val["psnr"], "best_val_psnr")
    tqdm.write(f"step {info['step']} images {info['images_seen']} wall {elapsed / 60:.1f} min: "
               f"val psnr {val['psnr']:.2f} sign psnr {val['sign_psnr']:.2f} codes {val['codes']}"
               f"{' (saved)' if better else ''}", file=sys.stderr)
    sys.stderr.flush()


def train_loop(setup, args, out: Path, info: dict, val_data) -> None:
    """Steps until `should_stop`, from where `info` says; a checkpoint every --save-every minutes
    and at the end. The bar shows the share of the codebook used over the last USAGE_WINDOW steps."""
    from tqdm import tqdm

    acc = setup.acc
    step, seen = int(info["step"]), int(info["images_seen"])
    wall0, t0 = float(info["wall_seconds"]), time.time()
    last_save = time.time()
    recent: list[torch.Tensor] = []
    bar = tqdm(total=args.steps, initial=step, disable=args.no_progress or not acc.is_main_process,
               mininterval=1.0 if sys.stderr.isatty() else 15.0, dynamic_ncols=True)
    stop = False
    while not stop:
        x, m = training_batch(args, seen, setup)
        lr = lr_at(step, args, wall0 + time.time() - t0)
        loss, y, ids = train_step(setup, args, x, m, lr)
        ema_update(setup, step, args.ema)
        step += 1
        seen += args.batch_size * acc.num_processes
        recent = (recent + [ids.detach().flatten().cpu()])[-USAGE_WINDOW:]
        if step % 10 == 0:
            used = torch.cat(recent).unique().numel() / setup.cfg.codebook_size
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr(y.detach().float(), x).mean().item():.2f}",
                            use=f"{used:.2f}", lr=f"{lr:.1e}", refresh=False)
        bar.update(1)

        elapsed = wall0 + time.time() - t0
        stop = should_stop(args, step, t0, elapsed)
        if acc.is_main_process and (stop or time.time() - last_save >= args.save_every * 60):
            last_save = time.time()
            info.update(step=step, images_seen=seen)
            save_and_report(setup, args, out, info, val_data, elapsed)
    bar.close()


def run(args) -> int:
    problem = check_arguments(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    out = Path(args.out)
    info = {"step": 0, "images_seen": 0, "wall_seconds": 0.0, "best_val_psnr": -1.0}
    setup = prepare_model(args, out, info)
    if setup is None:
        return 2
    val_data = val_batch()
    describe_run(setup)
    train_loop(setup, args, out, info, val_data)
    setup.acc.wait_for_everyone()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmgen.train.vq", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
