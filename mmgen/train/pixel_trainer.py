"""What the two pixel-model trainers (`train/vq.py`, `train/refiner.py`) share: choosing the
precision, starting or resuming a model with its EMA twin and optimizer, the EMA update, the
stopping rule, and the trainer state on disk (safetensors + JSON, never pickle).

    setup = start(args, out, info, config_from_dict=VQConfig.from_dict, build_config=build_config,
                  make_model=VQTokenizer)
    if setup is None: return 2           # --resume with nothing to resume (message printed)
    ... train with setup.model (prepared), setup.opt; setup.raw is the unwrapped model
    ema_update(setup, step, args.ema)
    save_trainer(out / "trainer", setup.raw, setup.ema, setup.opt, {**info, ...})

The transformer trainer (`train/lm.py`) is different in kind (streams of ids, no EMA, no
trainer folder) and keeps its own loop.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from mmgen.hardware import bf16_native
from mmgen.io import atomic_save_safetensors, atomic_write_json


# --- checkpoint state -------------------------------------------------------------------------
def optimizer_to_safetensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_safetensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_trainer(folder: Path, model, ema, opt, info: dict) -> None:
    """fp32 weights, EMA and optimizer state: everything `--resume` needs, each file atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(model.state_dict(), folder / "model.safetensors")
    if ema is not None:
        atomic_save_safetensors(ema.state_dict(), folder / "ema.safetensors")
    t, meta = optimizer_to_safetensors(opt)
    atomic_save_safetensors(t, folder / "optimizer.safetensors")
    atomic_write_json(folder / "state.json", {**info, **meta})


# --- starting a run ---------------------------------------------------------------------------
@dataclass
class Setup:
    acc: object                      # accelerate.Accelerator
    bf16: bool
    cfg: object                      # the model's config (from the checkpoint when resuming)
    model: torch.nn.Module           # prepared by accelerate (DDP-wrapped on several processes)
    raw: torch.nn.Module             # the same model, unwrapped
    ema: torch.nn.Module | None
    opt: torch.optim.Optimizer
    ema_params: list = field(default_factory=list)
    raw_params: list = field(default_factory=list)

    @property
    def device(self):
        return self.acc.device


def start(args, out: Path, info: dict, *, config_from_dict: Callable, build_config: Callable,
          make_model: Callable, before_model: Callable | None = None) -> Setup | None:
    """Accelerator, config, model, EMA and AdamW — fresh, or from `out/trainer` with --resume.

    `info` (step, images seen, wall time, best score…) is updated in place from the saved state.
    `before_model(device)` runs after the accelerator exists and before the model is seeded
    and built (the refiner loads its frozen VQ there). Returns None, after saying why, when
    --resume finds nothing to resume.
    """
    from accelerate import Accelerator

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    bf16 = not args.no_bf16 and bf16_native("cuda" if cuda else "cpu")
    acc = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not cuda)
    trainer_dir = out / "trainer"
    init = Path(args.init_from) if getattr(args, "init_from", None) else None
    if args.resume:
        if not (trainer_dir / "state.json").is_file():
            print(f"--resume: nothing to resume in {trainer_dir}", file=sys.stderr)
            return None
        cfg = config_from_dict(json.loads((out / "config.json").read_text()))
        saved = json.loads((trainer_dir / "state.json").read_text())
        info.update({k: v for k, v in saved.items() if k != "param_groups"})
    elif init is not None:    # a shipped checkpoint's config and weights, a fresh optimizer
        if not (init / "config.json").is_file() or not (init / "model.safetensors").is_file():
            print(f"--init-from {init}: no checkpoint there (config.json + model.safetensors)", file=sys.stderr)
            return None
        cfg = config_from_dict(json.loads((init / "config.json").read_text()))
        # where the weights came from, and how they were made, stays in every record of this run
        info["init_from"] = {"checkpoint": str(init), "training": getattr(cfg, "training", None) or {}}
    else:
        cfg = build_config(args)
    if before_model is not None:
        before_model(acc.device)
    torch.manual_seed(args.seed)
    model = make_model(cfg).train()
    ema = make_model(cfg).eval().requires_grad_(False) if args.ema > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    if args.resume:
        model.load_state_dict(load_file(str(trainer_dir / "model.safetensors")))
        if ema is not None and (trainer_dir / "ema.safetensors").is_file():
            ema.load_state_dict(load_file(str(trainer_dir / "ema.safetensors")))
        optimizer_from_safetensors(opt, load_file(str(trainer_dir / "optimizer.safetensors")), saved)
    elif init is not None:
        shipped = {k: v.float() for k, v in load_file(str(init / "model.safetensors")).items()}
        model.load_state_dict(shipped)
        if ema is not None:
            ema.load_state_dict(shipped)
    elif ema is not None:
        ema.load_state_dict(model.state_dict())
    model, opt = acc.prepare(model, opt)
    if ema is not None:
        ema.to(acc.device)
    raw = acc.unwrap_model(model)
    return Setup(acc=acc, bf16=bf16, cfg=cfg, model=model, raw=raw, ema=ema, opt=opt,
                 ema_params=list(ema.parameters()) if ema is not None else [], raw_params=list(raw.parameters()))


# --- each step --------------------------------------------------------------------------------
def ema_update(setup: Setup, step: int, decay: float) -> None:
    """θ_ema ← d·θ_ema + (1−d)·θ, d warmed up so the early EMA is not the random init."""
    if setup.ema is None:
        return
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(setup.ema_params, setup.raw_params, 1 - d)


def shipped_model(setup: Setup):
    """What a checkpoint ships: the EMA weights (buffers, e.g. a codebook updated by its own EMA,
    taken from the live model), or the live model without EMA."""
    if setup.ema is None:
        return setup.raw
    for be, br in zip(setup.ema.buffers(), setup.raw.buffers()):
        be.copy_(br)
    return setup.ema


def training_record(setup: Setup, args, info: dict, command: str, **figures) -> dict:
    """The `training` block of a shipped config: progress, validation figures, how it was trained."""
    return {**{k: info[k] for k in ("step", "images_seen", "wall_seconds")}, **figures,
            "batch_size": args.batch_size * setup.acc.num_processes, "crop": args.crop, "lr": args.lr,
            "bf16": setup.bf16, "device": str(setup.device), "processes": setup.acc.num_processes,
            "command": command, **({"init_from": info["init_from"]} if "init_from" in info else {})}


def checkpoint(setup: Setup, out: Path, shipped, record: dict, info: dict, score: float, best_key: str) -> bool:
    """Ship `shipped` into `out` when `score` beats info[best_key]; always save the trainer state.
    Returns whether it was shipped."""
    better = score > info[best_key]
    if better:
        info[best_key] = score
        shipped.save_pretrained(out, training=record)
    save_trainer(out / "trainer", setup.raw, setup.ema, setup.opt, {**info, "last": record})
    return better


def should_stop(args, step: int, started: float, elapsed: float) -> bool:
    """--steps reached, or --minutes of this run, or --schedule-minutes of the whole schedule."""
    return (step >= args.steps or (args.minutes > 0 and time.time() - started >= args.minutes * 60)
            or (args.schedule_minutes > 0 and elapsed >= args.schedule_minutes * 60))
