"""The transformer: a `transformers` Llama-family causal LM over the one token stream.

We build it from a small config with named presets instead of writing our own attention:
`LlamaForCausalLM` gives RoPE, GQA, SDPA/flash-attention, KV caches and safetensors
save/load, all well tested. What is ours is the preset table and the stream-aware
metadata stored next to the weights (vocabulary layout, training progress).

    from mmgen.model import build_model, load_model
    model = build_model("small", vocab_size=stream.vocab_size)
    model.save_pretrained("checkpoints/lm")          # config.json + model.safetensors
    model = load_model("checkpoints/lm")
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    context: int = 2048


PRESETS: dict[str, Preset] = {
    "tiny": Preset(hidden=64, layers=2, heads=4, kv_heads=2, mlp=128, context=1024),    # tests
    "draft": Preset(hidden=192, layers=2, heads=3, kv_heads=1, mlp=512),               # speculative drafts
    "small": Preset(hidden=384, layers=8, heads=6, kv_heads=2, mlp=1024),              # shipped, CPU
    "base": Preset(hidden=768, layers=12, heads=12, kv_heads=4, mlp=2048),             # one GPU
    "large": Preset(hidden=1536, layers=24, heads=16, kv_heads=8, mlp=4096, context=4096),  # many GPUs
}


def flash_attention_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
        return True
    except ImportError:
        return False


def attention_implementation(device: str | torch.device | None = None) -> str:
    """flash_attention_2 on CUDA when flash-attn is installed, SDPA everywhere else."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    return "flash_attention_2" if on_cuda and flash_attention_available() else "sdpa"


def llama_config(preset: str | Preset, vocab_size: int, **extra) -> LlamaConfig:
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden,
        intermediate_size=p.mlp,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=p.context,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **extra,
    )


def build_model(preset: str | Preset, vocab_size: int, *, device=None, seed: int | None = None,
                **extra) -> LlamaForCausalLM:
    if seed is not None:
        torch.manual_seed(seed)
    config = llama_config(preset, vocab_size, **extra)
    config._attn_implementation = attention_implementation(device)
    model = LlamaForCausalLM(config)
    if device is not None:
        model.to(device)
    return model


def load_model(path: str | Path, *, device=None, dtype: torch.dtype | None = None) -> LlamaForCausalLM:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no transformer checkpoint at {path} (config.json missing)")
    model = LlamaForCausalLM.from_pretrained(path, dtype=dtype or torch.float32,
                                             attn_implementation=attention_implementation(device),
                                             use_safetensors=True)
    if device is not None:
        model.to(device)
    return model.eval()


def preset_dict(name: str) -> dict:
    return asdict(PRESETS[name])


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
