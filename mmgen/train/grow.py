"""Deepen a trained transformer without changing what it says: `mmgen train grow`.

    mmgen train grow --layers 12 --out runs/lm12        # checkpoints/lm (8 layers) → 12 layers
    mmgen train lm --resume --out runs/lm12 …           # then fine-tune it as usual

Block expansion (LLaMA Pro, Wu et al. 2024): new decoder layers are spread evenly between the
old ones, each a copy of the layer before it with its two output projections (attention's
o_proj, the MLP's down_proj) set to zero. A pre-norm layer adds its attention and MLP outputs to
the residual stream, so a layer whose output projections are zero adds nothing: the grown model's
logits equal the old model's exactly, and fine-tuning starts from everything it knew. The
gradient still reaches the zeroed projections (it is the product of their input, which the
copied weights make meaningful, and the loss's gradient), so the new layers start learning at
the first step; the rest of each new layer learns once its projections move off zero.

Why by hand: transformers and accelerate grow no models; this is a key renaming over the
safetensors state dict plus a config change.
"""
from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import torch

# with attention_bias / mlp_bias a projection has a bias too: zeroed with it, or the layer adds the bias
OUTPUT_PROJECTIONS = ("self_attn.o_proj.weight", "self_attn.o_proj.bias",
                      "mlp.down_proj.weight", "mlp.down_proj.bias")
LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
GROWN_SUFFIX = re.compile(r"-\d+-layers$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", default="checkpoints/lm", help="the transformer to deepen")
    p.add_argument("--out", required=True, help="where the grown checkpoint goes (written atomically)")
    p.add_argument("--layers", type=int, required=True, help="decoder layers of the grown model (more than now)")


def layer_plan(old: int, new: int) -> list[int | None]:
    """For each layer of the grown model, the old layer it is (an int) or None for a new one.
    New layers are spread evenly: each follows a run of old layers (8 → 12: o o n o o n o o n o o n)."""
    if new <= old:
        raise ValueError(f"--layers must be more than the model's {old} layers, not {new}")
    added = new - old
    plan: list[int | None] = []
    for i in range(old):
        plan.append(i)
        # after old layer i, add as many new layers as keep the running share even
        while len(plan) - (i + 1) < added * (i + 1) // old:
            plan.append(None)
    return plan


def copied_from(plan: list[int | None]) -> list[int]:
    """For each layer of the grown model, the old layer whose weights it starts from (a new layer
    copies the old layer before it)."""
    sources, last = [], None
    for source in plan:
        last = source if source is not None else last
        sources.append(last)
    return sources


def grown_name(preset: str | None, layers: int) -> str:
    """The grown model's preset name (it is served as mmgen-<name>): no longer the preset's shape,
    so the layer count joins it, e.g. small → small-12-layers, small-12-layers → small-16-layers."""
    base = GROWN_SUFFIX.sub("", preset or "lm")
    return f"{base}-{layers}-layers"


def grow_state(state: dict[str, torch.Tensor], plan: list[int | None]) -> dict[str, torch.Tensor]:
    """The grown model's state dict: old layers renumbered; each new layer a copy of the layer
    before it with its output projections zeroed (so it adds nothing to the residual stream)."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    grown = {}
    for key, value in state.items():
        m = LAYER_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            grown[key] = value
    for index, (source, copied) in enumerate(zip(plan, copied_from(plan))):
        block = layers[copied]
        if source is None:       # a new layer: the copy adds nothing until its projections learn
            block = {name: (torch.zeros_like(w) if name in OUTPUT_PROJECTIONS else w.clone())
                     for name, w in block.items()}
        for name, w in block.items():
            grown[f"model.layers.{index}.{name}"] = w
    return grown


def grow(model, layers: int):
    """A new model with `layers` decoder layers that computes exactly what `model` does."""
    from ..model import MMGenForCausalLM
    plan = layer_plan(model.config.num_hidden_layers, layers)
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    config.mmgen_preset = grown_name(getattr(config, "mmgen_preset", None), layers)
    grown = MMGenForCausalLM(config)
    state = grow_state(model.state_dict(), plan)
    missing, unexpected = grown.load_state_dict(state, strict=False)
    # tied output weights are the one key a state dict may leave out
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"grown state does not fit: missing {missing}, unexpected {unexpected}")
    grown.tie_weights()
    progress = copy.deepcopy(getattr(model.config, "mmgen_training", {}) or {})   # the old model's stays as it was
    progress.setdefault("grown", []).append({"at_step": progress.get("steps", 0),
                                             "from_layers": model.config.num_hidden_layers,
                                             "to_layers": layers, "plan": plan})
    return grown.eval(), progress


def check_out(source: Path, out: Path) -> None:
    """Refuse an --out whose replacement would lose something: the checkpoint is swapped in for the
    whole folder (io.atomic_folder), so --out may be new or a transformer checkpoint, but not the
    one being grown, a file, or a folder of something else (`--out runs` for `--out runs/lm12`)."""
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the checkpoint being grown (--from); give a new folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot write --out {out}: {existing} is a file")
    if existing == out and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ValueError(f"--out {out} holds something other than a transformer checkpoint, and the "
                         "checkpoint would replace all of it; give a new folder")


def run(args) -> int:
    from safetensors import SafetensorError

    from ..model import count_parameters, load_model
    from ..text import TextTokenizer
    from .common import save_lm_checkpoint
    source, out = Path(args.source), Path(args.out)
    try:
        check_out(source, out)
        model = load_model(source)
        text = TextTokenizer.from_pretrained(source)
        grown, progress = grow(model, args.layers)
        save_lm_checkpoint(grown, text, out, progress)      # on an error, --out is left as it was
    except (OSError, ValueError, SafetensorError) as e:     # OSError: no weights, or --out not writable
        raise SystemExit(f"mmgen train grow: {e}")
    print(f"{source} ({model.config.num_hidden_layers} layers, {count_parameters(model) / 1e6:.1f} M parameters)"
          f" → {args.out} ({args.layers} layers, {count_parameters(grown) / 1e6:.1f} M parameters)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mmgen train grow", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
