"""Train the diffusion refiner (`mmgen/refiner.py`): `mmgen train refiner`.

    mmgen train refiner --out checkpoints/refiner --schedule-minutes 60
    mmgen train refiner --out checkpoints/refiner --resume          # carry on where it stopped
    mmgen train refiner --init-from checkpoints/refiner --out runs/refiner   # fine-tune shipped weights
    accelerate launch -m mmgen.train.refiner --out checkpoints/refiner   # several processes / GPUs

Each training pair is made on the fly from a training scene (seed < EVAL_SEED_OFFSET): the target
is the clean render; the input is the frozen VQ tokenizer's decode of the render's codes after
`corrupt_codes` has changed a fraction of them (random substitutions, codes borrowed from elsewhere
in the picture, swaps with a neighbour, row runs shifted by one code) at a rate drawn per picture
from `--rates` (0 included: a clean decode must come out at least as good), or now and then
(`--clean-input-fraction`) the clean render itself, which must come back unchanged. The refiner sees the
clean render noised to a timestep t and the corrupted decode, and predicts the clean render; t is
the sampler's first timestep (pure noise: the step that does the cleaning) `--start-t-fraction` of
the time, else one of the later timesteps the 1-4-step samplers visit or uniform. Loss and crops
are the tokenizer trainer's: L1 + MSE + edge L1 on token-grid-aligned crops around objects and
signs; sign pixels weigh `--sign-weight` and pixels the corrupted decode gets visibly wrong
`--error-weight` (the blotches are a few percent of the pixels, and what there is to learn).

bf16 autocast on CPUs with native bf16 and on CUDA. Writes into --out: config.json +
model.safetensors (EMA weights, bf16, replaced only when the held-out validation score — mean PSNR
after refining at 0 % and 5 % corrupted codes — improves) and trainer/ (fp32 weights, EMA,
optimizer state as safetensors + JSON: everything `--resume` needs; never pickle).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from mmgen.refiner import PRESETS, Refiner, RefinerConfig, corrupt_codes
from mmgen.train.pixel_trainer import checkpoint, ema_update, shipped_model, should_stop, start, training_record
from mmgen.train.vq import content_crops, lr_at, psnr, reconstruction_loss, to_batch, training_scene, val_batch
from mmgen.vq import VQTokenizer

DEFAULT_RATES = "0,0.02,0.05,0.1,0.2"
VAL_RATES = (0.0, 0.05)         # the validation score is the mean PSNR after refining at these rates
CLEAN = "clean input"           # validation also refines the clean renders themselves (recorded, not scored)
VAL_SEED = 12345                # fixed corruption and sampling noise for validation
ERROR_THRESHOLD = 0.1           # a decoded pixel this far off the render (any channel, in [0, 1]) is "wrong"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="checkpoints/refiner", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--vq", default="checkpoints/vq", help="the image tokenizer whose decodes are refined")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="network size preset")
    p.add_argument("--sample-steps", type=int, help="override the preset's default sampling steps")
    p.add_argument("--steps", type=int, default=100_000, help="stop after this many optimizer steps")
    p.add_argument("--minutes", type=float, default=0, help="stop after this much wall time in this run (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.05, help="cosine decay ends at lr × this")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--decay-steps", type=int, default=0, help="length of the cosine schedule (0 = --steps)")
    p.add_argument("--schedule-minutes", type=float, default=0,
                   help="run the cosine schedule over this much total training wall time (resumes included) "
                        "instead of over steps, and stop when it is spent")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped weights (0 = off)")
    p.add_argument("--crop", type=int, default=0,
                   help="train on crops this size (multiple of 8, aligned to the token grid; 0 = whole images: "
                        "VQ-encoding the renders costs as much as a 64-px crop's step, so whole images see "
                        "more corrupted codes per second)")
    p.add_argument("--sign-crop", type=float, default=0.3,
                   help="when a scene has a sign, centre its crop on the sign this often")
    p.add_argument("--rates", default=DEFAULT_RATES, help="corruption rates, one drawn per picture")
    p.add_argument("--clean-input-fraction", type=float, default=0.1,
                   help="fraction of pictures whose input is the clean render itself (it must come back unchanged)")
    p.add_argument("--start-t-fraction", type=float, default=0.75,
                   help="fraction of pictures at the sampler's first timestep, where it does most of its work "
                        "(the rest: half at the timesteps the 1-4-step samplers visit, half uniform)")
    p.add_argument("--error-weight", type=float, default=4.0,
                   help="loss weight of pixels the corrupted decode gets visibly wrong (> ERROR_THRESHOLD)")
    p.add_argument("--sign-fraction", type=float, default=0.5, help="fraction of training scenes with a sign")
    p.add_argument("--sign-weight", type=float, default=4.0, help="loss weight of pixels in a sign's box")
    p.add_argument("--grad-weight", type=float, default=1.0, help="weight of the edge (pixel-difference) loss")
    p.add_argument("--mse-weight", type=float, default=1.0)
    p.add_argument("--val-scenes", type=int, default=48, help="held-out scenes scored at every checkpoint")
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--resume", action="store_true", help="continue from --out/trainer")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from a shipped refiner's weights (fresh optimizer), e.g. to follow a retrained tokenizer")
    p.add_argument("--no-progress", action="store_true")


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise SystemExit(f"--rates takes comma-separated fractions, e.g. {DEFAULT_RATES}; got {text!r}") from None
    if not rates or any(not 0 <= r <= 1 for r in rates):
        raise SystemExit(f"--rates must be fractions in [0, 1]; got {text!r}")
    return rates


def training_pairs(vq: VQTokenizer, scenes, rates: list[float], rng: random.Random, seed: int,
                   clean_fraction: float = 0.0):
    """Scenes → (clean renders [B, 3, 128, 128], sign mask [B, 1, 128, 128], inputs [B, 3, 128, 128]):
    each input is the decode of the render's codes corrupted at a rate drawn from `rates`, or, with
    probability `clean_fraction`, the clean render itself."""
    x, m = to_batch(scenes)
    x, m = x.to(vq.device), m.to(vq.device)
    ids = vq.encode_tensor(x)
    bad = corrupt_codes(ids.cpu(), [rng.choice(rates) for _ in scenes], torch.Generator().manual_seed(seed),
                        codebook_size=vq.codebook_size)
    cond = vq.decode_tensor(bad).clone()      # out of inference mode: autograd may save it
    clean = torch.tensor([rng.random() < clean_fraction for _ in scenes], device=x.device)
    cond[clean] = x[clean]
    return x, m, cond


def sample_timesteps(n: int, model: Refiner, start_fraction: float, gen: torch.Generator, device) -> torch.Tensor:
    """`start_fraction` of the timesteps at the sampler's first one (from noise, the step that does the
    cleaning); of the rest, half from the later timesteps the 1-4-step samplers visit, half uniform."""
    first = model.timesteps(1)[0]
    visited = torch.tensor(sorted({t for s in range(2, 5) for t in model.timesteps(s)} - {first}) or [first])
    t = torch.randint(0, model.config.train_timesteps, (n,), generator=gen)
    u = torch.rand(n, generator=gen)
    later = (u >= start_fraction) & (u < start_fraction + (1 - start_fraction) / 2)
    t[later] = visited[torch.randint(0, len(visited), (int(later.sum()),), generator=gen)]
    t[u < start_fraction] = first
    return t.to(device)


def loss_weights(x: torch.Tensor, cond: torch.Tensor, sign_mask: torch.Tensor, args):
    """Per-pixel extra loss weight (≥ 0, added to 1) for `reconstruction_loss`, and the settings that read it:
    sign pixels get `--sign-weight`, pixels the corrupted decode gets visibly wrong `--error-weight`
    (whichever is larger). Most of a picture is already right; the blotches are what is to be learnt."""
    wrong = ((cond - x).abs().amax(1, keepdim=True) > ERROR_THRESHOLD).float()
    extra = torch.maximum((args.sign_weight - 1) * sign_mask, (args.error_weight - 1) * wrong)
    return extra, SimpleNamespace(sign_weight=2.0, mse_weight=args.mse_weight, grad_weight=args.grad_weight)


@torch.no_grad()
def evaluate(model: Refiner, val: dict, bf16: bool) -> dict:
    """PSNR before (the corrupted decode) and after refining, at each validation rate."""
    model.eval()
    res = {}
    for rate, (x, cond) in val.items():
        g = torch.Generator().manual_seed(VAL_SEED)
        after = torch.cat([model.sample(cond[i:i + 16], generator=g, bf16=bf16) for i in range(0, len(cond), 16)])
        res[rate] = (psnr(cond, x).mean().item(), psnr(after, x).mean().item())
    return res


def build_validation(vq: VQTokenizer, n: int) -> dict:
    xv, _ = val_batch()
    xv = xv[:: max(1, len(xv) // max(1, n))][:n].to(vq.device)       # half with signs, as val_batch makes them
    ids = vq.encode_tensor(xv)
    out = {}
    for rate in VAL_RATES:
        bad = corrupt_codes(ids.cpu(), rate, torch.Generator().manual_seed(VAL_SEED), codebook_size=vq.codebook_size)
        out[rate] = (xv, vq.decode_tensor(bad).clone())
    out[CLEAN] = (xv, xv)
    return out


def describe(key) -> str:
    return key if key == CLEAN else f"{key:.0%}"


def command_line() -> str:
    prog = "mmgen" if Path(sys.argv[0]).name == "mmgen" else "python -m mmgen.train.refiner"
    return " ".join([prog] + sys.argv[1:])


def build_config(args) -> RefinerConfig:
    cfg = RefinerConfig.from_dict(PRESETS[args.preset].to_dict())
    if args.sample_steps:
        cfg.steps = args.sample_steps
    cfg.training = {}
    return cfg


def check_arguments(args) -> list[float]:
    """The corruption rates; a bad --rates or --crop exits with the reason."""
    rates = parse_rates(args.rates)
    if args.crop and (args.crop % 8 or not 0 < args.crop <= 128):
        raise SystemExit(f"--crop must be a multiple of 8 in 8..128 (or 0); got {args.crop}")
    return rates


def prepare_model(args, out: Path, info: dict):
    """(`start`'s model, EMA and optimizer, the frozen tokenizer on the training device), or None,
    after saying why, when --resume finds nothing to resume."""
    frozen = {}

    def load_vq(device):
        frozen["vq"] = VQTokenizer.from_pretrained(args.vq, device=device).requires_grad_(False)

    setup = start(args, out, info, config_from_dict=RefinerConfig.from_dict, build_config=build_config,
                  make_model=Refiner, before_model=load_vq)
    return None if setup is None else (setup, frozen["vq"])


def describe_run(setup, args) -> None:
    acc = setup.acc
    if acc.is_main_process:
        print(f"refiner: {sum(p.numel() for p in setup.raw_params) / 1e6:.2f}M params, {setup.cfg.steps} sampling "
              f"steps {setup.raw.timesteps()}, vq {args.vq}, device {setup.device}, bf16 {setup.bf16}, "
              f"processes {acc.num_processes}, threads {torch.get_num_threads()}", flush=True)


def training_batch(args, seen: int, setup, vq: VQTokenizer, rates: list[float]):
    """This process's slice of the global batch after `seen` images (every process renders its
    own; data continues across resumes): clean renders x, sign masks m, corrupted decodes cond,
    timesteps t and the noised renders x_t, cropped with --crop."""
    base = seen + setup.acc.process_index * args.batch_size
    rng = random.Random(base * 7 + args.seed)
    scenes = [training_scene(base + i, args.seed, args.sign_fraction) for i in range(args.batch_size)]
    x, m, cond = training_pairs(vq, scenes, rates, rng, base * 31 + args.seed, args.clean_input_fraction)
    if args.crop and args.crop < x.shape[-1]:
        both, m = content_crops(torch.cat([x, cond], 1), m, scenes, args.crop, rng, args.sign_crop)
        x, cond = both[:, :3], both[:, 3:]
    gen = torch.Generator().manual_seed(base * 13 + args.seed)
    t = sample_timesteps(len(x), setup.raw, args.start_t_fraction, gen, setup.device)
    noise = torch.randn(x.shape, generator=gen).to(setup.device)
    x_t = setup.raw.add_noise(x * 2 - 1, noise, t)
    return x, m, cond, t, x_t


def train_step(setup, args, batch, lr: float):
    """One optimizer step at learning rate `lr` on `training_batch`'s output; returns (loss, the
    predicted clean pictures in [0, 1])."""
    acc, opt = setup.acc, setup.opt
    x, m, cond, t, x_t = batch
    for g in opt.param_groups:
        g["lr"] = lr
    with acc.autocast():
        pred = setup.model(x_t, t, cond * 2 - 1)
    y = (pred.float() + 1) / 2
    extra, weighting = loss_weights(x, cond, m, args)
    loss = reconstruction_loss(y, x, extra, weighting)
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(setup.model.parameters(), 1.0)
    opt.step()
    return loss, y


def show_progress(bar, setup, batch, loss, y, lr: float) -> None:
    """PSNR gain of the predictions from pure noise (the first sampling step) over their inputs,
    clean-render inputs left out (their PSNR before is infinite)."""
    x, _, cond, t, _ = batch
    before = psnr(cond, x)
    keep = (t == setup.raw.timesteps(1)[0]) & (before < 90)
    gain = (psnr(y.detach()[keep], x[keep]) - before[keep]).mean().item()
    bar.set_postfix(loss=f"{loss.item():.4f}", psnr_in=f"{before[before < 90].mean().item():.2f}",
                    gain_t0=f"{gain:+.2f}", lr=f"{lr:.1e}", refresh=False)


def save_and_report(setup, args, out: Path, info: dict, val: dict, vq: VQTokenizer, rates: list[float],
                    elapsed: float) -> None:
    """Score the shipped weights (mean PSNR after refining at VAL_RATES), write the checkpoint (the
    model only when it beats the best so far) and print the figures. `info` already holds step and
    images seen."""
    from tqdm import tqdm

    shipped = shipped_model(setup)
    res = evaluate(shipped, val, setup.bf16)
    setup.raw.train()
    score = sum(res[r][1] for r in VAL_RATES) / len(VAL_RATES)
    info.update(wall_seconds=round(elapsed, 1))
    record = training_record(
        setup, args, info, command_line(), rates=rates, vq=str(args.vq), vq_step=vq.config.training.get("step"),
        **{f"val_psnr_{'clean_input' if r == CLEAN else f'{round(r * 100)}pct'}":
           {"before": round(b, 3), "after": round(a, 3)} for r, (b, a) in res.items()})
    better = checkpoint(setup, out, shipped, record, info, score, "best_val")
    tqdm.write(f"step {info['step']} images {info['images_seen']} wall {elapsed / 60:.1f} min: val PSNR "
               + ", ".join(f"{describe(r)} {b:.2f} → {a:.2f}" for r, (b, a) in res.items())
               + (" (saved)" if better else ""), file=sys.stderr)
    sys.stderr.flush()


def train_loop(setup, args, out: Path, info: dict, vq: VQTokenizer, rates: list[float], val: dict) -> None:
    """Steps until `should_stop`, from where `info` says; a checkpoint every --save-every minutes
    and at the end."""
    from tqdm import tqdm

    acc = setup.acc
    step, seen = int(info["step"]), int(info["images_seen"])
    wall0, t0 = float(info["wall_seconds"]), time.time()
    last_save = time.time()
    bar = tqdm(total=args.steps, initial=step, disable=args.no_progress or not acc.is_main_process,
               mininterval=1.0 if sys.stderr.isatty() else 15.0, dynamic_ncols=True)
    stop = step >= args.steps
    while not stop:
        batch = training_batch(args, seen, setup, vq, rates)
        lr = lr_at(step, args, wall0 + time.time() - t0)
        loss, y = train_step(setup, args, batch, lr)
        ema_update(setup, step, args.ema)
        step += 1
        seen += args.batch_size * acc.num_processes
        if step % 5 == 0 or step == 1:
            show_progress(bar, setup, batch, loss, y, lr)
        bar.update(1)

        elapsed = wall0 + time.time() - t0
        stop = should_stop(args, step, t0, elapsed)
        if acc.is_main_process and (stop or time.time() - last_save >= args.save_every * 60):
            last_save = time.time()
            info.update(step=step, images_seen=seen)
            save_and_report(setup, args, out, info, val, vq, rates, elapsed)
    bar.close()


def run(args) -> int:
    rates = check_arguments(args)
    out = Path(args.out)
    info = {"step": 0, "images_seen": 0, "wall_seconds": 0.0, "best_val": -1.0}
    prepared = prepare_model(args, out, info)
    if prepared is None:
        return 2
    setup, vq = prepared
    val = build_validation(vq, args.val_scenes)
    describe_run(setup, args)
    train_loop(setup, args, out, info, vq, rates, val)
    setup.acc.wait_for_everyone()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmgen.train.refiner", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
