"""Load the shipped checkpoints and wire the parts: `mmgen.load()`.

    import mmgen
    model = mmgen.load()                         # checkpoints/ next to the package, CPU by default
    chat = model.chat(seed=0)
    reply = chat.send("draw a red circle at the top left")    # reply.text, reply.image (PIL | None)
    model.generate("three blue squares", n=2)                  # [PIL.Image, PIL.Image]
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .engine import WEIGHTS, fp16_available, int8_available
from .generate import set_engine_weights
from .hardware import bf16_native
from .model import load_model
from .neighbours import NeighbourTable, is_neighbour_table
from .stream import Stream
from .text import TextTokenizer
from .vq import VQTokenizer

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    """bf16 where the hardware runs it natively (CUDA; CPUs with AMX/AVX512-BF16), else fp32.

    Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth:
    bf16 weights halve the bytes and measured 2.5x faster steps than fp32 here.
    """
    if dtype is not None:
        return dtype
    if bf16_native(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.float32


def pick_weights(device: torch.device, dtype: torch.dtype, weights: str | None) -> str:
    """How the decoding engine holds the transformer's projections. On a CPU that computes in fp32
    (no native bf16: AVX2 machines): "fp16", FBGEMM's packed fp16 weights, where torch has them
    (x86 builds), else "int8". Elsewhere the model's own weights ("native").

    A decoding pass reads every weight once and, at our size, is mostly a few-row matmul per
    projection, where fp32's GEMM repacks its weight on every call. On a 2-core AVX2 CPU
    (benchmarks/generate.py, speculative decoding, one picture, two side-by-side runs): fp16
    1.32-1.38 s, int8 1.44-1.56 s, fp32 2.01-2.16 s; fp16's rounding costs nothing measurable in
    held-out loss, int8's 0.0003 nats (benchmarks/quantization.py). Where bf16 is native it
    stays: bf16 weights are already half the bytes and its matmuls are fast."""
    if weights is not None:
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
        if weights == "int8" and (device.type != "cpu" or not int8_available()):
            raise ValueError("int8 weights are for CPUs, with a torch that has torch._weight_int8pack_mm")
        if weights == "fp16" and (device.type != "cpu" or not fp16_available()):
            raise ValueError("fp16 weights are for x86 CPUs, with a torch built with FBGEMM")
        return weights
    if device.type != "cpu" or dtype != torch.float32:
        return "native"
    return "fp16" if fp16_available() else "int8" if int8_available() else "native"


class MMGen:
    """The loaded model: the transformer, the image tokenizer and the stream layout between them."""

    def __init__(self, lm, vq: VQTokenizer, stream: Stream, device: torch.device, name: str = "mmgen"):
        self.lm, self.vq, self.stream, self.device, self.name = lm, vq, stream, device, name
        self.draft = None          # the draft model for speculative decoding, when shipped: a neighbour
                                   # table (neighbours.py) or a small transformer
        self.refiner = None        # the diffusion refiner that cleans decoded pictures, when shipped
        # positions past the longest conversation it was trained on are untrained: stay inside them
        trained = (getattr(lm.config, "mmgen_training", None) or {}).get("max_len")
        self.context = min(int(lm.config.max_position_embeddings), int(trained or 1 << 30))

    @classmethod
    def load(cls, path: str | Path | None = None, *, device=None, dtype: torch.dtype | None = None,
             weights: str | None = None) -> "MMGen":
        root = Path(path) if path is not None else DEFAULT_CHECKPOINTS
        if not root.is_dir():
            raise FileNotFoundError(f"no checkpoints folder at {root}")
        device = pick_device(device)
        vq = VQTokenizer.from_pretrained(root / "vq").to(device).eval()
        lm = load_model(root / "lm", device=device, dtype=pick_dtype(device, dtype))
        set_engine_weights(lm, pick_weights(device, next(lm.parameters()).dtype, weights))
        text = TextTokenizer.from_pretrained(root / "lm")
        stream = Stream(text, vq.codebook_size)
        if stream.vocab_size != lm.config.vocab_size:
            raise ValueError(f"{root / 'lm'} has a vocabulary of {lm.config.vocab_size} ids but its tokenizer "
                             f"and {root / 'vq'} make {stream.vocab_size}: the checkpoints do not belong together")
        model = cls(lm, vq, stream, device, name=f"mmgen-{getattr(lm.config, 'mmgen_preset', 'lm')}")
        if is_neighbour_table(root / "draft"):
            model.draft = NeighbourTable.load(root / "draft")
            if model.draft.codebook_size != vq.codebook_size:
                raise ValueError(f"{root / 'draft'} drafts codes of a {model.draft.codebook_size}-code book, "
                                 f"{root / 'vq'} has {vq.codebook_size}: the checkpoints do not belong together")
        elif (root / "draft" / "config.json").is_file():
            model.draft = load_model(root / "draft", device=device, dtype=pick_dtype(device, dtype))
        if (root / "refiner" / "config.json").is_file():
            from .refiner import Refiner
            model.refiner = Refiner.from_pretrained(root / "refiner", device=device)
        return model

    # --- sessions and one-shot helpers ---------------------------------------------------------
    def chat(self, seed: int | None = None, **settings):
        from .session import ChatSession
        return ChatSession(self, seed=seed, **settings)

    def generate(self, prompt: str, n: int = 1, seed: int | None = None, **settings) -> list[Image.Image]:
        """n pictures for one prompt (one batch)."""
        return self.chat(seed=seed, **settings).send(prompt, n=n, picture="always").images

    def edit(self, image, instruction: str, seed: int | None = None, mask=None, **settings) -> Image.Image:
        """The picture (PIL or path) changed as the instruction says; with a mask, only inside it."""
        reply = self.chat(seed=seed, **settings).send(instruction, image=image, picture="always", mask=mask)
        if reply.image is None:
            from .session import SessionError
            raise SessionError(f"the model answered without a picture: {reply.text!r}")
        return reply.image

    def ask(self, image, question: str, seed: int | None = None, **settings) -> str:
        return self.chat(seed=seed, **settings).send(question, image=image, picture="never").text


def load(path: str | Path | None = None, *, device=None, dtype: torch.dtype | None = None,
         weights: str | None = None) -> MMGen:
    """The shipped model (or the checkpoints folder at `path`). `weights`: how the decoding engine
    holds the transformer's projections, "native", "int8" or "fp16" (default: pick_weights decides)."""
    return MMGen.load(path, device=device, dtype=dtype, weights=weights)
