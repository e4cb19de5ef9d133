"""The diffusion refiner: cleans a decoded picture's seams, blotches and ragged edges in 1-4 steps.

    from mmgen.refiner import Refiner
    ref = Refiner.from_pretrained("checkpoints/refiner")
    clean = ref.refine(vq.decode(ids)[0])          # PIL in → PIL out (a list → a list, a tensor → a tensor)

Codes sampled by the transformer sometimes disagree at their borders; decoded, that shows as
seams, blotches and smudged letters. The refiner is a small pixel-space diffusion model
(diffusers' `UNet2DModel`) conditioned on the decoded picture by channel concatenation — the role
OpenAI's consistency decoder plays for DALL·E 3, at 128 × 128 and a few million parameters.

"Clean, never invent" is built into the network: it predicts the clean picture (x0, diffusers'
prediction_type "sample") as *the conditioning picture plus a correction*, and the correction's
last convolution starts at zero — so an untrained refiner returns its input unchanged, and
training only learns departures from the decode that the clean renders justify.

Sampling (`Refiner.sample`): DDIM with η = 0 over `steps` evenly spaced ("trailing") timesteps
from `start_timestep` down; at each step the network predicts x0 and the next noisy picture is
rebuilt from it. `start_timestep` = T − 1 starts from (almost) pure noise, as training sees it;
a lower value starts SDEdit-style from the conditioning picture noised to that level. The shipped
count is one step: the x0 prediction from pure noise is the consistency models' one-step map,
trained directly here (most training pictures are drawn at that timestep) rather than distilled;
2-4 steps re-noise that prediction and predict again. Deterministic: the noise comes from a
`torch.Generator` seeded per call (seed 0 unless given).

`mmgen train refiner` trains one (`mmgen/train/refiner.py`); `benchmarks/refiner.py` measures it.
The training inputs are decodes of codes corrupted the way the transformer errs (`corrupt_codes`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file

from .hardware import bf16_native
from .io import atomic_save_safetensors, atomic_write_json, read_json
from .vq import GRID, IMAGE_SIZE, images_to_tensor

FORMAT = "mmgen-refiner-1"
MAX_STEPS = 16                     # refine() refuses more steps than this (the design target is ≤ 4)


@dataclass
class RefinerConfig:
    """Everything needed to rebuild the network and its sampler; stored as config.json."""
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)   # UNet widths at 128, 64, 32, 16 px
    layers_per_block: int = 1
    attention: bool = True             # self-attention in the 16 × 16 mid block (global context, ~2 ms)
    norm_groups: int = 8
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    steps: int = 1                     # sampling steps refine() takes by default (the shipped count)
    start_timestep: int | None = None  # first sampling timestep; None = train_timesteps − 1 (pure noise)
    # free-form record of how the weights were made (steps, images seen, wall time, command, vq)
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if not self.block_out_channels or any(c % self.norm_groups for c in self.block_out_channels):
            raise ValueError(f"block_out_channels {self.block_out_channels} must be non-empty multiples "
                             f"of norm_groups {self.norm_groups}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be in 1..{MAX_STEPS}; got {self.steps}")
        if self.start_timestep is not None and not 0 <= self.start_timestep < self.train_timesteps:
            raise ValueError(f"start_timestep must be in [0, {self.train_timesteps}); got {self.start_timestep}")

    @classmethod
    def from_dict(cls, d: dict) -> "RefinerConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"format"}
        if unknown:
            raise ValueError(f"unknown refiner config keys: {sorted(unknown)}")
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"refiner config format {d['format']!r} is not {FORMAT!r}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kw)

    def to_dict(self) -> dict:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        d["format"] = FORMAT
        return d


# Named presets: "tiny" for tests, "small" is what ships.
PRESETS: dict[str, RefinerConfig] = {
    "tiny": RefinerConfig(block_out_channels=(8, 16), norm_groups=4, attention=False),
    "small": RefinerConfig(),
}


def alphas_cumprod(cfg: RefinerConfig) -> torch.Tensor:
    """ᾱ_t for t = 0 … T − 1 from diffusers' DDIM scheduler (the noise schedule the config names)."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                          prediction_type="sample", clip_sample=False)
    return sched.alphas_cumprod.float().clone()


class Refiner(nn.Module):
    """x0 = conditioning + UNet([x_t, conditioning], t), all in [−1, 1]; the UNet's last conv starts at zero."""

    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        from diffusers import UNet2DModel
        self.config = config or RefinerConfig()
        cfg = self.config
        n = len(cfg.block_out_channels)
        self.unet = UNet2DModel(
            sample_size=IMAGE_SIZE, in_channels=6, out_channels=3,
            block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
            down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
            norm_num_groups=cfg.norm_groups, add_attention=cfg.attention,
            attention_head_dim=min(32, cfg.block_out_channels[-1]))
        nn.init.zeros_(self.unet.conv_out.weight)     # the correction starts at exactly zero:
        nn.init.zeros_(self.unet.conv_out.bias)       # an untrained refiner is the identity
        self.register_buffer("alphas_cumprod", alphas_cumprod(cfg), persistent=False)
        self.to(memory_format=torch.channels_last)    # faster convs on CPU
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- network -------------------------------------------------------------------------------
    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        """x_t, cond [B, 3, H, W] in [−1, 1] (H, W multiples of 2^(levels−1)); t int or [B] → x0 estimate [B, 3, H, W]."""
        if not torch.is_tensor(t):
            t = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
        inp = torch.cat([x_t, cond.to(x_t.dtype)], 1).contiguous(memory_format=torch.channels_last)
        return cond + self.unet(inp, t).sample.to(cond.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The forward process: √ᾱ_t · x0 + √(1 − ᾱ_t) · noise, t [B]."""
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0.dtype)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def timesteps(self, steps: int | None = None) -> list[int]:
        """The sampler's timesteps, evenly spaced ("trailing") from start_timestep down: 2 steps → [999, 499]."""
        steps = self.config.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be an int in 1..{MAX_STEPS}; got {steps!r}")
        start = self.config.train_timesteps - 1 if self.config.start_timestep is None else self.config.start_timestep
        return [int(round(start - i * (start + 1) / steps)) for i in range(int(steps))]

    # --- sampling ------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, cond: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None,
               *, bf16: bool | None = None) -> torch.Tensor:
        """cond [B, 3, 128, 128] float in [0, 1] → refined [B, 3, 128, 128] float in [0, 1].

        Noise is drawn on the CPU, one picture at a time, so a picture's result does not depend on
        the device or on what else is in the batch (given the same generator state at its turn)."""
        ts = self.timesteps(steps)
        c = cond.to(self.device).float() * 2 - 1
        noise = torch.cat([torch.randn((1, *c.shape[1:]), generator=generator) for _ in range(len(c))])
        noise = noise.to(self.device)
        ab = self.alphas_cumprod
        x = ab[ts[0]].sqrt() * c + (1 - ab[ts[0]]).sqrt() * noise       # ᾱ ≈ 0 at T − 1: pure noise
        x0 = c
        with self._autocast(bf16):
            for i, t in enumerate(ts):
                x0 = self(x, t, c).float().clamp(-1, 1)
                if i + 1 < len(ts):   # DDIM, η = 0: keep the implied noise, move to the next timestep
                    eps = (x - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
                    nxt = ts[i + 1]
                    x = ab[nxt].sqrt() * x0 + (1 - ab[nxt]).sqrt() * eps
        return (x0 + 1) / 2

    def _autocast(self, bf16: bool | None):
        if bf16 is None:   # bf16 where it is native
            bf16 = bf16_native(self.device)
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bool(bf16))

    def refine(self, images: Any, steps: int | None = None, seed: int | None = None,
               *, bf16: bool | None = None) -> Any:
        """Clean decoded pictures. A PIL image → a PIL image; a list of them → a list; a float
        tensor [B, 3, 128, 128] or [3, 128, 128] in [0, 1] → a float tensor of the same shape on
        the same device. `steps` defaults to the config's (the shipped count); `seed` (default 0)
        seeds the noise, so the same input and seed always give the same output."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None; got {type(seed).__name__}")
        self.timesteps(steps)                                  # validate before any work
        if isinstance(images, Image.Image):
            kind = "pil"
        elif isinstance(images, (list, tuple)):
            kind = "list"
        elif isinstance(images, torch.Tensor):
            kind = "tensor"
        else:
            raise TypeError(f"refine() takes a PIL image, a list of PIL images or a tensor [B, 3, 128, 128]; "
                            f"got {type(images).__name__}")
        _check_size(images, kind)
        try:
            x = images_to_tensor(images)
        except (TypeError, ValueError) as e:     # the tokenizer's checks, in this method's name
            raise type(e)(str(e).replace("encode()", "refine()")) from None
        g = torch.Generator().manual_seed(int(seed) if seed is not None else 0)
        y = self.sample(x, steps, g, bf16=bf16)
        if kind == "tensor":
            out = y.to(images.device)
            return out[0] if images.dim() == 3 else out
        arr = (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pics = [Image.fromarray(a, mode="RGB") for a in arr]
        return pics[0] if kind == "pil" else pics

    # --- save / load ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, *, dtype: torch.dtype = torch.bfloat16,
                        training: dict | None = None) -> None:
        """Write model.safetensors + config.json into `path`, each atomically (`io.atomic_write`);
        weights in `dtype` (bf16 halves the file)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if training is not None:
            self.config.training = dict(training)
        tensors = {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu())
                   for k, v in self.state_dict().items()}
        atomic_save_safetensors(tensors, path / "model.safetensors", metadata={"format": "pt"})
        atomic_write_json(path / "config.json", self.config.to_dict())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> "Refiner":
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} needs config.json and model.safetensors (train one: mmgen train refiner)")
        model = cls(RefinerConfig.from_dict(read_json(path / "config.json")))
        own = model.state_dict()
        state = {k: v.to(own[k].dtype) if k in own else v for k, v in load_file(str(path / "model.safetensors")).items()}
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()


def _check_size(images: Any, kind: str) -> None:
    """The refiner cleans decoded pictures: 128 × 128, nothing to resize."""
    if kind == "tensor":
        shape = tuple(images.shape)
        if images.dim() not in (3, 4) or shape[-3] != 3 or shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"refine() takes a tensor [B, 3, {IMAGE_SIZE}, {IMAGE_SIZE}] or "
                             f"[3, {IMAGE_SIZE}, {IMAGE_SIZE}]; got shape {shape}")
        return
    items = [images] if kind == "pil" else list(images)
    if not items:
        raise ValueError("refine() got an empty list of images")
    for im in items:
        if isinstance(im, Image.Image) and im.size != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"refine() takes {IMAGE_SIZE} × {IMAGE_SIZE} pictures (decoded ones); got {im.size}")


# --- corrupting codes the way the transformer errs ------------------------------------------------
SUBSTITUTE, BORROW, SWAP, SHIFT = "substitute", "borrow", "swap", "shift"
CORRUPTION_WEIGHTS: dict[str, float] = {
    SUBSTITUTE: 0.35,   # a random code from the whole codebook (a blotch)
    BORROW: 0.25,       # a code from elsewhere in the same picture (plausible, wrong place)
    SWAP: 0.25,         # two neighbouring codes exchanged (a seam)
    SHIFT: 0.15,        # a run of a row shifted by one code, the edge code repeated (ragged edges)
}
MAX_SHIFT_RUN = 8       # a shifted run covers 2 … this many codes


def corrupt_codes(ids: torch.Tensor, rate: float | Sequence[float] | torch.Tensor,
                  generator: torch.Generator | None = None, *, codebook_size: int = 4096,
                  weights: dict[str, float] | None = None) -> torch.Tensor:
    """A copy of `ids` [B, 16, 16] (or [16, 16]) with about `rate` of each grid's codes changed.

    `rate` is one fraction in [0, 1] or one per picture. Errors are drawn from `weights`
    (default `CORRUPTION_WEIGHTS`): random substitutions, codes borrowed from elsewhere in the
    picture, swaps with a neighbouring code and row runs shifted by one code, until
    round(rate · 256) positions differ from the original (swaps and shifts of equal codes change
    nothing and are not counted; a grid of one repeated code can only be substituted). Rate 0
    returns an exact copy. Deterministic given the generator's state."""
    if not torch.is_tensor(ids) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"corrupt_codes() takes an integer tensor of ids; got "
                        f"{type(ids).__name__ if not torch.is_tensor(ids) else ids.dtype}")
    single = ids.dim() == 2
    grid = ids[None] if single else ids
    if grid.dim() != 3 or tuple(grid.shape[1:]) != (GRID, GRID):
        raise ValueError(f"corrupt_codes() takes ids [B, {GRID}, {GRID}] or [{GRID}, {GRID}]; got {tuple(ids.shape)}")
    if grid.numel() and (int(grid.min()) < 0 or int(grid.max()) >= codebook_size):
        raise ValueError(f"ids must lie in [0, {codebook_size}); got values in [{int(grid.min())}, {int(grid.max())}]")
    rates = torch.as_tensor(rate, dtype=torch.float64).flatten()
    if rates.numel() == 1:
        rates = rates.expand(len(grid))
    if rates.numel() != len(grid):
        raise ValueError(f"corrupt_codes() got {rates.numel()} rates for {len(grid)} grids")
    if not torch.isfinite(rates).all() or (rates < 0).any() or (rates > 1).any():
        raise ValueError(f"corruption rates must lie in [0, 1]; got {rates.tolist()}")
    w = dict(CORRUPTION_WEIGHTS if weights is None else weights)
    if set(w) - set(CORRUPTION_WEIGHTS) or not w or min(w.values()) < 0 or sum(w.values()) <= 0:
        raise ValueError(f"weights must map some of {sorted(CORRUPTION_WEIGHTS)} to non-negative numbers; got {w}")
    kinds = list(w)
    probs = np.array([w[k] for k in kinds], dtype=np.float64)
    probs /= probs.sum()

    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    out = grid.detach().cpu().numpy().astype(np.int64)          # a copy
    for b in range(len(out)):
        target = int(round(float(rates[b]) * GRID * GRID))
        if target:
            _corrupt_grid(out[b], target, rng, kinds, probs, codebook_size)
    res = torch.from_numpy(out).to(device=ids.device, dtype=ids.dtype)
    return res[0] if single else res


def _corrupt_grid(g: np.ndarray, target: int, rng: np.random.Generator, kinds: list[str],
                  probs: np.ndarray, codebook_size: int) -> None:
    """Corrupt one [16, 16] grid in place until `target` positions differ from the original."""
    orig = g.copy()
    changed = lambda: int((g != orig).sum())
    uniform_only = len(np.unique(orig)) == 1
    for _ in range(50 * target + 100):        # guard: each attempt usually changes something
        have = changed()
        if have >= target:
            return
        left = target - have
        kind = SUBSTITUTE if uniform_only else kinds[rng.choice(len(kinds), p=probs)]
        r, c = int(rng.integers(GRID)), int(rng.integers(GRID))
        if kind == SUBSTITUTE:
            g[r, c] = rng.integers(codebook_size)
        elif kind == BORROW:
            g[r, c] = orig[rng.integers(GRID), rng.integers(GRID)]
        elif kind == SWAP and left >= 2:
            dr, dc = ((0, 1), (1, 0), (0, -1), (-1, 0))[rng.integers(4)]
            r2, c2 = r + dr, c + dc
            if 0 <= r2 < GRID and 0 <= c2 < GRID:
                g[r, c], g[r2, c2] = g[r2, c2], g[r, c]
        elif kind == SHIFT and left >= 2:
            n = int(rng.integers(2, min(MAX_SHIFT_RUN, left) + 1))
            c = min(c, GRID - n)
            run = g[r, c:c + n].copy()
            if rng.random() < 0.5:                 # a code dropped: the run moves left, its last code repeats
                g[r, c:c + n - 1], g[r, c + n - 1] = run[1:], run[-1]
            else:                                  # a code repeated: the run moves right
                g[r, c + 1:c + n], g[r, c] = run[:-1], run[0]
    # a grid that cannot reach the target by the cheap moves: finish with substitutions
    while changed() < target:
        r, c = int(rng.integers(GRID)), int(rng.integers(GRID))
        if g[r, c] == orig[r, c]:
            g[r, c] = (orig[r, c] + 1 + rng.integers(codebook_size - 1)) % codebook_size
