"""The image tokenizer: 128 × 128 RGB picture ⇄ 16 × 16 grid of codebook ids.

    from mmgen.vq import VQTokenizer
    tok = VQTokenizer.from_pretrained("checkpoints/vq")
    ids = tok.encode(render(sample_scene(0)))    # LongTensor [1, 16, 16]
    img = tok.decode(ids)[0]                      # PIL.Image 128 × 128

Network (VQGAN-style, Esser et al. 2021, scaled down for 2 CPU cores):
    encoder  conv3×3 → [GN, ReLU, conv4×4/2] × 3 (128 → 64 → 32 → 16 px) → res blocks → GN, ReLU, conv1×1
             ("conv", experimental, not shipped; or "local", `LocalEncoder`, where each code sees only
             its 8 × 8 patch: the shipped one, which lettering on the code grid needs)
    quantizer one id per 16 × 16 position
    decoder  conv3×3 → res blocks → [GN, ReLU, convT4×4/2, res blocks] × 3 (16 → 128 px) → GN, ReLU, conv3×3
GroupNorm in the conv encoder and the decoder: without it the ReLU net cannot take a large learning
rate and, with FSQ, the latent drifts into the tanh bound's saturation within a few steps.

Quantizers from `vector-quantize-pytorch`, chosen by `VQConfig.quantizer`:
- "vq" (shipped): VectorQuantize (van den Oord et al. 2017) with k-means init, EMA codebook updates,
  dead-code expiry (a code chosen less than `vq_dead_code_threshold` times per step on average is
  re-seeded from the batch), lookup in a 32-d projection, rotation-trick gradients
  (Fifty et al. 2024, https://arxiv.org/abs/2410.06424). Expiry keeps most of the codebook in use.
- "fsq" (experimental, not shipped): FSQ (Mentzer et al. 2023, https://arxiv.org/abs/2309.15505): a few bounded channels each
  rounded to L_i levels; the id is their mixed-radix number; nothing to learn in the codebook.
Both run in fp32 even under bf16 autocast (the library loses codebook usage in bf16).

Codes are computed with bf16 numerics on every machine (`encode_tensor`): the transformer was
trained on codes encoded under bf16 autocast, and fp32 encoding picks a different (near-duplicate)
code for ~10 % of positions — measured: the transformer's image loss on held-out conversations
0.225 on bf16 codes vs 0.313 on fp32 codes. Where bf16 is slow (CPUs without AVX512-BF16/AMX) the
encoder runs fp32 kernels with every conv's input and output rounded to bf16 (`emulated_bf16`):
the same codes as autocast, measured equal on 300 held-out pictures, at +2-5 ms instead of 5× the time.

`benchmarks/vq.py` measures a checkpoint; `python -m mmgen.train.vq` trains one.
"""
from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from .hardware import bf16_native
from .io import atomic_save_safetensors, atomic_write_json

IMAGE_SIZE = 128                 # the canvas (docs/WORLD.md)
DOWNSAMPLE = 8                   # one id per 8 × 8 patch
GRID = IMAGE_SIZE // DOWNSAMPLE  # 16 × 16 ids per image
NORM_GROUPS = 8                  # GroupNorm groups before the quantizer
RANGE_TOLERANCE = 1e-3           # float pixels may stray this far outside [0, 1] (rounding)


@dataclass
class VQConfig:
    """Everything needed to rebuild the network; stored as the checkpoint's config.json."""
    channels: tuple[int, ...] = (32, 64, 128)   # encoder widths at 128, 64, 32 px (decoder mirrors)
    latent_channels: int = 256                   # width at the 16 × 16 grid
    latent_blocks: int = 1                       # residual blocks at 16 × 16, encoder and decoder each
    decoder_blocks: tuple[int, ...] = (1, 1, 0)  # residual blocks after each decoder upsample (32, 64, 128 px)
    quantizer: str = "vq"                        # "vq" or "fsq" (see benchmarks: VQ ships)
    fsq_levels: tuple[int, ...] = (7, 5, 5, 5, 5)  # 4 375 codes (the FSQ paper's choice for ~2^12)
    vq_codebook_size: int = 4096
    vq_codebook_dim: int = 32                    # VQ looks codes up in this (projected) dimension
    vq_decay: float = 0.99                       # EMA decay of the codebook
    vq_dead_code_threshold: float = 0.3          # codes chosen fewer times per step than this (EMA) are re-seeded
    vq_commitment_weight: float = 0.25
    vq_cosine: bool = False
    encoder: str = "conv"                        # "conv" (VQGAN-style) or "local" (each code sees only its 8 × 8 patch)
    # free-form record of how the weights were made (steps, images seen, wall time, command)
    training: dict = field(default_factory=dict)

    @property
    def codebook_size(self) -> int:
        return int(math.prod(self.fsq_levels)) if self.quantizer == "fsq" else self.vq_codebook_size

    @classmethod
    def from_dict(cls, d: dict) -> "VQConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"codebook_size", "format"}
        if unknown:
            raise ValueError(f"unknown VQ config keys: {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
        d["codebook_size"] = self.codebook_size
        d["format"] = "mmgen-vq-1"
        return d


# Named presets: "tiny" for tests, "base" is what ships.
PRESETS: dict[str, VQConfig] = {
    "tiny": VQConfig(channels=(8, 8, 16), latent_channels=16, latent_blocks=1, decoder_blocks=(0, 0, 0),
                     quantizer="fsq", fsq_levels=(8, 5, 5, 5)),
    "base": VQConfig(),
    "local": VQConfig(encoder="local"),
}
LOCAL_ENCODER_BLOCKS = 2         # per-position residual blocks at 16 × 16 in the local encoder


def norm(ch: int) -> nn.Module:
    """GroupNorm (Wu & He 2018) as in VQGAN's encoder/decoder; it is what lets a no-frills ReLU
    conv net take a large learning rate from the first step."""
    return nn.GroupNorm(min(NORM_GROUPS, ch), ch)


class ResBlock(nn.Module):
    """x + conv(relu(norm(conv(relu(norm(x)))))); the last conv starts at zero, so the block starts as the identity.
    `kernel` 1 with `make_norm=ChannelNorm` is the local encoder's per-position block."""

    def __init__(self, ch: int, kernel: int = 3, make_norm=None):
        super().__init__()
        make_norm = make_norm or norm
        self.norm1, self.conv1 = make_norm(ch), nn.Conv2d(ch, ch, kernel, padding=kernel // 2)
        self.norm2, self.conv2 = make_norm(ch), nn.Conv2d(ch, ch, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class ChannelNorm(nn.Module):
    """LayerNorm over the channels at each position: a normalisation that, unlike GroupNorm, never
    lets one part of the picture change another's features."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.LayerNorm(ch)

    def forward(self, x):                      # [B, C, H, W]
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LocalEncoder(nn.Module):
    """Each code is a function of its own 8 × 8 patch and nothing else.

    The VQGAN-style encoder sees ~56 px around a patch and GroupNorm makes every feature depend on
    the statistics of the whole picture. In a tokenizer trained with it, this made codes a function
    of context: a plain white 8 × 8 patch was encoded as any of 1 213 codes (5.4 nats of entropy),
    and 4+ cells away from anything an edit changed only 67 % of codes stayed the same. The
    transformer then has to predict that arbitrariness (most of its loss) and cannot edit a picture
    by copying it. Here the receptive field is the patch: 2 × 2 stride-2 convs three times
    (128 → 16), per-position norms and 1 × 1 blocks, so equal patches always get equal codes and
    an edit leaves every code outside the patches it touches as it was. The decoder keeps its
    wide view, which it needs to draw smooth edges across patches from the codes around them.
    """

    def __init__(self, cfg: VQConfig, out_dim: int):
        super().__init__()
        c = list(cfg.channels) + [cfg.latent_channels]
        layers: list[nn.Module] = [nn.Conv2d(3, c[0], 1)]
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [ChannelNorm(cin), nn.ReLU(), nn.Conv2d(cin, cout, 2, stride=2)]
        layers += [ResBlock(cfg.latent_channels, kernel=1, make_norm=ChannelNorm) for _ in range(LOCAL_ENCODER_BLOCKS)]
        layers += [ChannelNorm(cfg.latent_channels), nn.ReLU(), nn.Conv2d(cfg.latent_channels, out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):                      # [B, 3, 128, 128] in [-1, 1] → [B, D, 16, 16]
        return self.net(x)


ENCODERS = ("conv", "local")


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig, out_dim: int):
        super().__init__()
        c = list(cfg.channels) + [cfg.latent_channels]
        layers: list[nn.Module] = [nn.Conv2d(3, c[0], 3, padding=1)]
        for cin, cout in zip(c[:-1], c[1:]):
            # stride-2 4 × 4 conv: 128 → 64 → 32 → 16
            layers += [norm(cin), nn.ReLU(), nn.Conv2d(cin, cout, 4, stride=2, padding=1)]
        layers += [ResBlock(cfg.latent_channels) for _ in range(cfg.latent_blocks)]
        layers += [norm(cfg.latent_channels), nn.ReLU(), nn.Conv2d(cfg.latent_channels, out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):                      # [B, 3, 128, 128] in [-1, 1] → [B, D, 16, 16]
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig, in_dim: int):
        super().__init__()
        c = [cfg.latent_channels] + list(reversed(cfg.channels))
        layers: list[nn.Module] = [nn.Conv2d(in_dim, cfg.latent_channels, 3, padding=1)]
        layers += [ResBlock(cfg.latent_channels) for _ in range(cfg.latent_blocks)]
        for i, (cin, cout) in enumerate(zip(c[:-1], c[1:])):
            # transposed 4 × 4 stride-2 conv: 16 → 32 → 64 → 128; each output pixel sees 2 × 2 inputs
            layers += [norm(cin), nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
            layers += [ResBlock(cout) for _ in range(cfg.decoder_blocks[i])]
        layers += [norm(c[-1]), nn.ReLU(), nn.Conv2d(c[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):                      # [B, D, 16, 16] → [B, 3, 128, 128] in about [-1, 1]
        return self.net(z)


def _make_quantizer(cfg: VQConfig) -> nn.Module:
    if cfg.quantizer == "fsq":
        from vector_quantize_pytorch import FSQ
        return FSQ(levels=list(cfg.fsq_levels), force_quantization_f32=True)
    if cfg.quantizer == "vq":
        from vector_quantize_pytorch import VectorQuantize
        return VectorQuantize(dim=cfg.latent_channels, codebook_size=cfg.vq_codebook_size,
                              codebook_dim=cfg.vq_codebook_dim, decay=cfg.vq_decay, kmeans_init=True,
                              threshold_ema_dead_code=cfg.vq_dead_code_threshold,
                              commitment_weight=cfg.vq_commitment_weight, use_cosine_sim=cfg.vq_cosine,
                              rotation_trick=True)
    raise ValueError(f"unknown quantizer {cfg.quantizer!r}; use 'fsq' or 'vq'")


def _fp32_only(device_type: str):
    """Quantize outside autocast: rounding/nearest-code search in bf16 collapses codebook usage."""
    return torch.autocast(device_type=device_type, enabled=False)


def round_to_bf16(t: torch.Tensor) -> torch.Tensor:
    """The nearest bf16 value of each element, kept in fp32."""
    return t.to(torch.bfloat16).float()


def emulated_bf16(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`net(x)` as CPU bf16 autocast computes it, with fp32 kernels.

    Autocast casts each conv's input and weights to bf16, multiplies with fp32 accumulation and
    returns bf16; the ops between convs then run on bf16 tensors. Products of two bf16 numbers are
    exact in fp32, so an fp32 conv of bf16-rounded weights and input, its output rounded to bf16
    (and each residual sum), reproduces that up to the order of the sums; norms and ReLUs in between
    commute with the next conv's rounding closely enough that the codes come out identical
    (measured on 300 held-out pictures). The rounding of activations is done by hooks that sit on
    the modules only during the call; a lock keeps two threads from removing each other's hooks
    mid-pass (other passes through `net` must not run meanwhile)."""
    lowered = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)      # what autocast runs in bf16
    weights = {f"{name}.{p}" if name else p: round_to_bf16(t)
               for name, mod in net.named_modules() if isinstance(mod, lowered)
               for p, t in mod.named_parameters(recurse=False)}
    with _EMULATION_LOCK:
        hooks = []
        for mod in net.modules():
            if isinstance(mod, lowered):
                hooks.append(mod.register_forward_pre_hook(lambda _m, args: (round_to_bf16(args[0]), *args[1:])))
            if isinstance(mod, (*lowered, ResBlock)):
                hooks.append(mod.register_forward_hook(lambda _m, _args, out: round_to_bf16(out)))
        try:
            return torch.func.functional_call(net, weights, (x,))
        finally:
            for h in hooks:
                h.remove()


_EMULATION_LOCK = threading.Lock()


GLYPH_FILE = "glyphs.safetensors"
PREVIEW_FILE = "preview.safetensors"     # per-code preview patches (mmgen.train.preview_table)
# A patch is a glyph's when its mean squared difference from the glyph's pixels is below this (in
# [0, 1]² units; 0.004 ≈ an RMS of 16 grey levels): the world's pictures match exactly and a saved
# JPEG of one still matches. A shape's square corner can match a letter's stem (1 patch in 38 400
# of 150 held-out scenes without a sign); it then decodes to the glyph's pixels, which differ from
# it only in its anti-aliased edge.
GLYPH_MATCH_MSE = 0.004


class GlyphCodes:
    """Exact codes for the lettering's patches (`mmgen.world.lettering`) and for one-colour patches.

    A learned codebook can only approximate the letters (it read 'C' as 'O' and 'S' as '8'), and
    retraining it would change the codes the transformer learnt everything else on. The world's
    lettering makes a finite set of two-colour patches, so each gets a codebook id of its own that
    the nearest-code search never picks (the `reserved` rows, ids no picture used): encoding gives
    a patch its glyph id when it matches a table patch; decoding runs the decoder's convs on the
    code the search would have picked for it (`base`), so the neighbourhood decodes as before,
    then pastes the table's pixels. A sign's plaque and the background round a word are whole
    one-colour patches on the grid: the table also holds the code each palette colour's plain
    patch is encoded to (not reserved: encoding is unchanged), and decoding pastes that colour,
    so a sign comes back pixel-exact — the decoder alone rounded the plaque's square corners and
    smeared its colour. Nothing else changes.

        ids       LongTensor [G]           codebook id of each table patch
        base      LongTensor [G]           the code the nearest-code search gives that patch
        patches   FloatTensor [G, 3, 8, 8] its pixels in [0, 1]
        reserved  BoolTensor [G]           a glyph's own id, which only the table gives
    """

    def __init__(self, ids: torch.Tensor, base: torch.Tensor, patches: torch.Tensor,
                 reserved: torch.Tensor | None = None):
        self.ids, self.base, self.patches = ids.long(), base.long(), patches.float()
        self.reserved = torch.ones(len(self.ids), dtype=torch.bool) if reserved is None else reserved.bool()
        self._flat = self.patches.reshape(len(self.ids), -1)              # [G, 192]
        self._rows = torch.nonzero(self.reserved).flatten()               # the rows `match` may give
        self._glyph_flat = self._flat[self._rows]
        self._glyph_sq = (self._glyph_flat * self._glyph_flat).sum(-1)

    def __len__(self) -> int:
        return int(self.reserved.sum())

    @property
    def glyph_ids(self) -> torch.Tensor:
        return self.ids[self.reserved]

    def lookup(self, codebook_size: int) -> torch.Tensor:
        """[codebook_size] LongTensor: the table row of each id the table holds, −1 elsewhere."""
        row = torch.full((codebook_size,), -1, dtype=torch.long)
        row[self.ids] = torch.arange(len(self.ids))
        return row

    def match(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [0, 1] → [B, H/8, W/8] table rows of patches that are glyphs (−1 elsewhere)."""
        b, _, h, w = x.shape
        p = F.unfold(x.float().cpu(), DOWNSAMPLE, stride=DOWNSAMPLE).transpose(1, 2)   # [B, L, 192]
        d = (p * p).sum(-1, keepdim=True) - 2 * p @ self._glyph_flat.T + self._glyph_sq  # squared distance
        best, k = (d / self._flat.shape[1]).min(-1)
        row = self._rows[k]
        row[best > GLYPH_MATCH_MSE] = -1
        return row.reshape(b, h // DOWNSAMPLE, w // DOWNSAMPLE)

    def paste(self, pixels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Write the table's pixels into `pixels` [B, 3, H, W] where `rows` [B, H/8, W/8] ≥ 0."""
        hit = rows >= 0
        if not hit.any():
            return pixels
        b, _, h, w = pixels.shape
        cols = F.unfold(pixels, DOWNSAMPLE, stride=DOWNSAMPLE).transpose(1, 2).clone()   # [B, L, 192]
        flat = hit.reshape(b, -1)
        cols[flat] = self._flat[rows.reshape(b, -1)[flat].cpu()].to(cols)
        return F.fold(cols.transpose(1, 2), (h, w), DOWNSAMPLE, stride=DOWNSAMPLE)

    def state(self) -> dict[str, torch.Tensor]:
        return {"ids": self.ids, "base": self.base, "patches": self.patches.contiguous(), "reserved": self.reserved}


class VQTokenizer(nn.Module):
    def __init__(self, config: VQConfig | None = None):
        super().__init__()
        self.config = config or VQConfig()
        self.glyphs: GlyphCodes | None = None        # set by `set_glyphs` / `from_pretrained`
        self._glyph_row: torch.Tensor | None = None
        self._glyph_flags: torch.Tensor | None = None
        # uint8 [codebook_size, 8, 8, 3]: what each code usually decodes to, for cheap previews
        # while a picture is drawn (previews.PreviewCanvas); set by `set_preview_patches` / `from_pretrained`
        self.preview_patches: torch.Tensor | None = None
        cfg = self.config
        # FSQ works on len(levels) bounded channels; VQ on the full latent (it projects inside)
        qdim = len(cfg.fsq_levels) if cfg.quantizer == "fsq" else cfg.latent_channels
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {cfg.encoder!r}; use one of {sorted(ENCODERS)}")
        self.encoder = (LocalEncoder if cfg.encoder == "local" else Encoder)(cfg, qdim)
        self.quantizer = _make_quantizer(cfg)
        self.decoder = Decoder(cfg, qdim)
        for mod in self.modules():
            # He init for ReLU nets (PyTorch's default shrinks activations layer by layer, which
            # with no normalisation makes the first hundreds of steps crawl); residual branches
            # keep their zero-initialised last conv so every block starts as the identity
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)) and mod.weight.abs().sum() > 0:
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                nn.init.zeros_(mod.bias)
        # the output conv starts at zero: the first reconstruction is flat grey, not He-init noise
        # (noise makes the edge loss huge and the first hundred steps go into undoing it)
        nn.init.zeros_(self.decoder.net[-1].weight)
        nn.init.zeros_(self.decoder.net[-1].bias)
        self.to(memory_format=torch.channels_last)   # ~1.1-1.6× faster convs on CPU
        self.eval()

    # --- properties ---------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def is_glyph(self, ids: torch.Tensor) -> torch.Tensor:
        """Bool, shaped like `ids`: which ids are the lettering's own glyph codes."""
        if self.glyphs is None:
            return torch.zeros_like(ids, dtype=torch.bool)
        return self._glyph_flags.to(ids.device)[ids]

    def set_glyphs(self, glyphs: GlyphCodes | None) -> None:
        """Give the lettering's patches their exact codes (see `GlyphCodes`); None removes them."""
        self.glyphs = glyphs
        self._glyph_row = None if glyphs is None else glyphs.lookup(self.codebook_size)
        self._glyph_flags = None
        if glyphs is not None:                  # [codebook_size] bool: the reserved glyph ids
            self._glyph_flags = torch.zeros(self.codebook_size, dtype=torch.bool)
            self._glyph_flags[glyphs.glyph_ids] = True

    def set_preview_patches(self, patches: torch.Tensor | None) -> None:
        """The per-code preview table, uint8 [codebook_size, 8, 8, 3]; None removes it."""
        if patches is not None:
            expected = (self.codebook_size, DOWNSAMPLE, DOWNSAMPLE, 3)
            if tuple(patches.shape) != expected or patches.dtype != torch.uint8:
                raise ValueError(f"a preview table is uint8 {list(expected)}; got {patches.dtype} {list(patches.shape)}")
            patches = patches.cpu().contiguous()
        self.preview_patches = patches

    # --- tensor paths (training and batched use) ---------------------------------------------
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, D, 16, 16] latents → (quantized [B, D, 16, 16] fp32, ids [B, 16, 16], aux loss scalar)."""
        b, d, h, w = z.shape
        with _fp32_only(z.device.type):
            # [B, D, H, W] → [B, H·W, D]: the sequence layout both quantizers take
            z = z.float().permute(0, 2, 3, 1).reshape(b, h * w, d)
            if self.config.quantizer == "fsq":
                q, ids = self.quantizer(z)
                aux = z.new_zeros(())
            else:
                q, ids, aux = self.quantizer(z)
                aux = aux.sum()
        q = q.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        return q, ids.reshape(b, h, w).long(), aux

    def ids_to_latent(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, 16, 16] → quantized latents [B, D, 16, 16] (fp32)."""
        b, h, w = ids.shape
        flat = ids.reshape(b, h * w)
        with _fp32_only(ids.device.type):
            if self.config.quantizer == "fsq":
                q = self.quantizer.indices_to_codes(flat)               # [B, H·W, D]
            else:
                q = self.quantizer.get_output_from_indices(flat)        # [B, H·W, D]
        q = q.float().reshape(b, h, w, -1)
        return q.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: x [B, 3, 128, 128] in [0, 1] → (reconstruction in [0, 1] unclamped, ids, aux loss)."""
        z = self.encoder((x * 2 - 1).contiguous(memory_format=torch.channels_last))
        q, ids, aux = self.quantize(z)
        y = self.decoder(q.to(z.dtype))
        return (y.float() + 1) / 2, ids, aux

    @torch.inference_mode()
    def encode_tensor(self, x: torch.Tensor, *, bf16: bool | None = None) -> torch.Tensor:
        """x [B, 3, 128, 128] float in [0, 1] (on this model's device) → ids LongTensor [B, 16, 16].

        `bf16` None (default): bf16 numerics on every machine — autocast where bf16 is native,
        emulated with fp32 kernels elsewhere — so a picture gets the codes the transformer was
        trained on wherever it is encoded. True: autocast even where it is slow. False: plain fp32."""
        x = (x.to(self.device).float() * 2 - 1).contiguous(memory_format=torch.channels_last)
        if bf16 is None and not bf16_native(self.device):
            z = emulated_bf16(self.encoder, x)
        else:
            with self._autocast(True if bf16 is None else bf16):
                z = self.encoder(x)
        ids = self.latent_to_ids(z)
        if self.glyphs is not None:
            rows = self.glyphs.match((x + 1) / 2).to(ids.device)
            ids = torch.where(rows >= 0, self.glyphs.ids.to(ids.device)[rows.clamp(min=0)], ids)
        return ids

    @torch.inference_mode()
    def latent_to_ids(self, z: torch.Tensor) -> torch.Tensor:
        """The encoder's latents [B, D, 16, 16] → ids [B, 16, 16]."""
        if self.config.quantizer == "vq":
            return self.nearest_codes(z)
        return self.quantize(z)[1]

    @torch.inference_mode()
    def nearest_codes(self, z: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """[B, D, 16, 16] latents → ids [B, 16, 16]: the VectorQuantize lookup without its training
        machinery. The library computes full distances with a sqrt and a Gumbel argmax over
        [N, 4096] (≈ 80 % of encode time on CPU); argmin of the squared distance picks the same
        code, in fp32. ‖x‖² is the same for every code, so it is left out; one fused addmm
        (‖c‖² − 2 x·c) per chunk of rows that stays in cache: 3× faster than unfused, unchunked."""
        b, d, h, w = z.shape
        with _fp32_only(z.device.type):
            x = self.quantizer.project_in(z.float().permute(0, 2, 3, 1).reshape(b * h * w, d))
            codes = self.quantizer._codebook.embed[0].float()           # [K, codebook_dim]
            c2 = (codes * codes).sum(-1)
            if self.glyphs is not None:                                  # glyph ids come only from the table
                c2 = c2.clone()
                c2[self.glyphs.glyph_ids.to(c2.device)] = float("inf")
            ids = torch.cat([torch.addmm(c2, x[i:i + chunk], codes.T, alpha=-2).argmin(-1)
                             for i in range(0, len(x), chunk)])
        return ids.reshape(b, h, w).long()

    @torch.inference_mode()
    def decode_tensor(self, ids: torch.Tensor, *, bf16: bool | None = None) -> torch.Tensor:
        """ids [B, 16, 16] → pixels [B, 3, 128, 128] float in [0, 1]."""
        ids = ids.to(self.device)
        rows = None
        if self.glyphs is not None:
            rows = self._glyph_row.to(ids.device)[ids]
            ids = torch.where(rows >= 0, self.glyphs.base.to(ids.device)[rows.clamp(min=0)], ids)
        q = self.ids_to_latent(ids)
        with self._autocast(bf16):
            y = self.decoder(q)
        pixels = ((y.float() + 1) / 2).clamp_(0, 1)
        return pixels if rows is None else self.glyphs.paste(pixels, rows)

    def _autocast(self, bf16: bool | None):
        """Decoding: bf16 autocast where it is native (None) or when asked (True); else fp32."""
        enabled = bf16_native(self.device) if bf16 is None else bf16
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # --- user-facing paths ---------------------------------------------------------------------
    def encode(self, images: Any, *, bf16: bool | None = None) -> torch.Tensor:
        """A PIL image, a list of them, or a float tensor [B, 3, H, W] in [0, 1] → LongTensor [B, 16, 16] (CPU)."""
        return self.encode_tensor(images_to_tensor(images), bf16=bf16).cpu()

    def decode(self, ids: Any, *, bf16: bool | None = None) -> list[Image.Image]:
        """ids [B, 16, 16] (or [16, 16], or [B, 256]) of ints in [0, codebook_size) → list of 128 × 128 RGB PIL images."""
        ids = check_ids(ids, self.codebook_size)
        return pixels_to_images(self.decode_tensor(ids, bf16=bf16))

    # --- save / load ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, *, dtype: torch.dtype = torch.bfloat16,
                        training: dict | None = None) -> None:
        """Write config.json + model.safetensors (+ the glyph table and preview patches when set) into
        `path`, each atomically (`io.atomic_write`).

        Weights are stored in `dtype` (bf16 halves the file; the quantizer's buffers stay fp32)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if training is not None:
            self.config.training = dict(training)
        tensors = {}
        for k, v in self.state_dict().items():
            v = v.detach().cpu()
            if v.is_floating_point() and not k.startswith("quantizer."):
                v = v.to(dtype)
            tensors[k] = v.contiguous()
        pt = {"format": "pt"}
        atomic_save_safetensors(tensors, path / "model.safetensors", metadata=pt)
        if self.glyphs is not None:
            atomic_save_safetensors(self.glyphs.state(), path / GLYPH_FILE, metadata=pt)
        if self.preview_patches is not None:
            atomic_save_safetensors({"patches": self.preview_patches}, path / PREVIEW_FILE, metadata=pt)
        atomic_write_json(path / "config.json", self.config.to_dict())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> "VQTokenizer":
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} needs config.json and model.safetensors (train one: python -m mmgen.train.vq)")
        cfg = VQConfig.from_dict(json.loads((path / "config.json").read_text()))
        model = cls(cfg)
        state = load_file(str(path / "model.safetensors"))
        own = model.state_dict()
        state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
        if (path / GLYPH_FILE).is_file():
            g = load_file(str(path / GLYPH_FILE))
            model.set_glyphs(GlyphCodes(g["ids"], g["base"], g["patches"], g.get("reserved")))
        if (path / PREVIEW_FILE).is_file():
            model.set_preview_patches(load_file(str(path / PREVIEW_FILE))["patches"])
        return model.to(device).eval()


# --- input checking ------------------------------------------------------------------------------
def _pil_to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparency is composited over white, as a viewer shows it."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    if img.width == 0 or img.height == 0:
        raise ValueError(f"empty image of size {img.size}")
    img = _pil_to_rgb(img)
    if img.size != (IMAGE_SIZE, IMAGE_SIZE):
        img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def images_to_tensor(images: Any) -> torch.Tensor:
    """PIL image | list/tuple of PIL images | tensor [B, C, H, W] or [C, H, W] → float [B, 3, 128, 128] in [0, 1].

    Other sizes are resized, greyscale/RGBA converted; anything else is refused."""
    if isinstance(images, Image.Image):
        return _pil_to_tensor(images)[None]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("encode() got an empty list of images")
        bad = [type(x).__name__ for x in images if not isinstance(x, Image.Image)]
        if bad:
            raise TypeError(f"encode() takes a list of PIL images; got items of type {sorted(set(bad))}")
        return torch.stack([_pil_to_tensor(x) for x in images])
    if isinstance(images, torch.Tensor):
        x = images
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4:
            raise ValueError(f"encode() takes an image tensor [B, C, H, W]; got shape {tuple(images.shape)}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"encode() got an empty tensor of shape {tuple(images.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255
        elif not x.is_floating_point():
            raise TypeError(f"encode() takes a float tensor in [0, 1] or uint8; got dtype {x.dtype}")
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("encode() got NaN or infinite pixel values")
        lo, hi = x.min().item(), x.max().item()
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"encode() takes pixels in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
        x = x.clamp(0, 1)
        c = x.shape[1]
        if c == 1:                                 # greyscale
            x = x.expand(-1, 3, -1, -1)
        elif c == 4:                               # RGBA over white
            a = x[:, 3:4]
            x = x[:, :3] * a + (1 - a)
        elif c != 3:
            raise ValueError(f"encode() takes 1, 3 or 4 channels; got {c} (tensor shape {tuple(images.shape)})")
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        return x.contiguous()
    raise TypeError(f"encode() takes a PIL image, a list of PIL images or a tensor [B, 3, H, W]; "
                    f"got {type(images).__name__}")


def pixels_to_images(x: torch.Tensor) -> list[Image.Image]:
    """Pixels [B, 3, H, W] in [0, 1] → B RGB PIL images (rounded to the nearest grey level)."""
    arr = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, mode="RGB") for a in arr]


def check_ids(ids: Any, codebook_size: int) -> torch.Tensor:
    """Validate image ids → LongTensor [B, 16, 16]; refuses wrong shapes, non-integers and ids out of range."""
    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(ids)
    elif isinstance(ids, (list, tuple)):
        try:
            ids = torch.tensor(ids)
        except (TypeError, ValueError) as e:
            raise TypeError(f"decode() takes a tensor of integer ids; could not convert: {e}") from None
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"decode() takes a LongTensor [B, 16, 16] of ids; got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"decode() takes integer ids; got dtype {ids.dtype}")
    shape = tuple(ids.shape)
    if ids.dim() == 2 and shape == (GRID, GRID):
        ids = ids[None]
    elif ids.dim() == 2 and shape[1] == GRID * GRID:
        ids = ids.reshape(-1, GRID, GRID)
    elif ids.dim() == 1 and shape[0] == GRID * GRID:
        ids = ids.reshape(1, GRID, GRID)
    if ids.dim() != 3 or tuple(ids.shape[1:]) != (GRID, GRID) or ids.shape[0] == 0:
        raise ValueError(f"decode() takes ids of shape [B, {GRID}, {GRID}]; got {shape}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= codebook_size:
        raise ValueError(f"image ids must lie in [0, {codebook_size}); got values in [{lo}, {hi}]")
    return ids.long()
