"""The model and what it does with a turn: `mmgen.load()` wires the shipped checkpoints (MMGen), and
a `Pipeline` draws a reply on them: encode → generate → decode → refine, with previews on the way.

    import mmgen
    model = mmgen.load()                         # checkpoints/ next to the package, CPU by default
    chat = model.chat(seed=0)
    reply = chat.send("draw a red circle at the top left")    # reply.text, reply.image (PIL | None)
    model.generate("three blue squares", n=2)                  # [PIL.Image, PIL.Image]

    from mmgen.stream import Conversation, Turn
    pipe = Pipeline(model)                       # what a chat session draws with, diffusers-style:
    drawn = pipe(Conversation((Turn("user", "a red star"),)), Settings(picture="always"), seed=0)
    drawn.text, drawn.images, drawn.codes        # the reply's words, its pictures and their codes
    for event in pipe.stream(conversation, settings, seed=0): ...   # 'text' and 'preview' events

A conversation is the turns so far, ending with the user's; the session (session.py) keeps it and
checks what users send (inputs.py) before the pipeline sees it.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generator

import torch
from PIL import Image
from safetensors import SafetensorError
from transformers.utils import logging as hf_logging

from .engine import WEIGHTS, fp16_available, int8_available
from .generate import generate_ids, reply_reserve, set_engine_weights
from .hardware import bf16_native
from .imageutil import make_transparent
from .inputs import SessionError
from .model import load_model
from .neighbours import NeighbourTable, is_neighbour_table
from .previews import PreviewCanvas
from .replies import Event
from .settings import Settings
from .speculative import CopyDrafter, ModelDrafter, NeighbourDrafter, SpeculationStats
from .stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Stream, StreamError
from .text import TextTokenizer
from .unknown_words import load_vocabulary
from .vq import VQTokenizer

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


SHOWN_CACHE = 64                         # refined pictures a pipeline keeps, so history reads don't refine again


@contextmanager
def quiet_transformers():
    """transformers without its progress bars ("Loading weights: 100%|…|") and notices while
    checkpoints load, for the Python API, the command line and the server alike; the caller's own
    transformers settings are put back after."""
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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


@dataclass
class PictureWork:
    """Time a model spent turning codes into pictures, over every session that used it: what a
    picture costs outside the transformer's passes (the server reports it: benchmarks/server_load.py)."""
    decoded: int = 0                   # pictures the image tokenizer decoded
    decode_seconds: float = 0.0
    refined: int = 0                   # pictures the refiner cleaned
    refine_seconds: float = 0.0


class MMGen:
    """The loaded model: the transformer, the image tokenizer and the stream layout between them."""

    def __init__(self, lm, vq: VQTokenizer, stream: Stream, device: torch.device, name: str = "mmgen"):
        self.lm, self.vq, self.stream, self.device, self.name = lm, vq, stream, device, name
        self.draft = None          # the draft model for speculative decoding, when shipped: a neighbour
                                   # table (neighbours.py) or a small transformer
        self.refiner = None        # the diffusion refiner that cleans decoded pictures, when shipped
        self.vocabulary = None     # the words the transformer was taught, when listed (unknown_words.py)
        self.picture_work = PictureWork()
        # positions past the longest conversation it was trained on are untrained: stay inside them
        trained = (getattr(lm.config, "mmgen_training", None) or {}).get("max_len")
        self.context = min(int(lm.config.max_position_embeddings), int(trained or 1 << 30))

    @classmethod
    @quiet_transformers()
    def load(cls, path: str | Path | None = None, *, device=None, dtype: torch.dtype | None = None,
             weights: str | None = None) -> "MMGen":
        root = Path(path) if path is not None else DEFAULT_CHECKPOINTS
        if not root.is_dir():
            raise FileNotFoundError(f"no checkpoints folder at {root}")
        try:
            return cls._load_parts(root, device, dtype, weights)
        except SafetensorError as e:              # not an OSError: a weights file that is not safetensors
            raise ValueError(f"a weights file under {root} is damaged or cut short ({e})") from None

    @classmethod
    def _load_parts(cls, root: Path, device, dtype: torch.dtype | None, weights: str | None) -> "MMGen":
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
        model.vocabulary = load_vocabulary(root / "lm")
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
            raise SessionError(f"the model answered without a picture: {reply.text!r}")
        return reply.image

    def ask(self, image, question: str, seed: int | None = None, **settings) -> str:
        """The answer, in words, to a question about the picture; a change to make ("make it blue")
        is refused with inputs.NotAQuestion (ChatSession.ask)."""
        return self.chat(seed=seed, **settings).ask(question, image=image).text


def load(path: str | Path | None = None, *, device=None, dtype: torch.dtype | None = None,
         weights: str | None = None) -> MMGen:
    """The shipped model (or the checkpoints folder at `path`). `weights`: how the decoding engine
    holds the transformer's projections, "native", "int8" or "fp16" (default: pick_weights decides)."""
    return MMGen.load(path, device=device, dtype=dtype, weights=weights)


# --- drawing a reply ---------------------------------------------------------------------------------
@dataclass
class Drawn:
    """What one call of the pipeline made: the reply's words and its finished pictures."""
    text: str                                 # the words of the reply (of the first, for a batch)
    codes: list[tuple[int, ...]]              # each finished picture's 256 codes, in raster order
    images: list[Image.Image]                 # the same pictures as shown: decoded, refined, background set
    stats: SpeculationStats                   # how speculative decoding went
    prompt_ids: list[int] = field(default_factory=list)   # what the transformer read: the fitted conversation


class Pipeline:
    """A chat's image work on a loaded model (MMGen): encode → generate → decode → refine.

    `stream` draws the reply to a conversation's last turn, yielding its words as they come and a
    preview per row of its first picture; calling the pipeline draws it without previews. Pictures
    given by the user are encoded once (`encode`); pictures drawn are shown decoded and refined
    (`pictures`). It keeps the refined pictures it showed (SHOWN_CACHE of them), so a chat's
    history shows them again without refining again: a session keeps one pipeline for that."""

    def __init__(self, model):
        self.model = model
        self._refined: OrderedDict = OrderedDict()      # (codes, seed) → refined picture, most recent last

    def __call__(self, conversation: Conversation, settings: Settings | None = None, *, seed: int, n: int = 1,
                 region: list[bool] | None = None, decoders=None) -> Drawn:
        return run_to_end(self.stream(conversation, settings or Settings(), seed=seed, n=n, region=region,
                                      previews=False, decoders=decoders))

    # --- encode -------------------------------------------------------------------------------
    def encode(self, image: Image.Image) -> tuple[int, ...]:
        """The 256 codes of a picture the user gives (VQ-encoded once, on the way in)."""
        try:
            ids = self.model.vq.encode(image)
        except (TypeError, ValueError) as e:
            raise SessionError(f"cannot use that picture: {e}") from None
        return tuple(ids[0].reshape(-1).tolist())

    def _prompt(self, conversation: Conversation, max_words: int) -> tuple[list[int], list[int], tuple[int, ...] | None]:
        """The conversation as the transformer reads it, fitted to its context with room for a reply
        of up to `max_words` words and a picture: the prompt, its unconditional twin for guidance
        (the last request's words dropped), and the codes of the picture an edit starts from (None
        if there is none)."""
        stream = self.model.stream
        try:
            fitted = stream.fit(conversation, self.model.context, reserve=reply_reserve(max_words))
        except StreamError as e:
            raise SessionError(f"that message does not fit in the model's context: {e}") from None
        cond = stream.encode(fitted, generation_prompt=True).ids
        uncond = stream.encode(fitted, generation_prompt=True, drop_last_user_text=True).ids
        reference = fitted.last_image_index()
        return cond, uncond, fitted.turns[reference].codes if reference is not None else None

    # --- generate -----------------------------------------------------------------------------
    def stream(self, conversation: Conversation, settings: Settings, *, seed: int, n: int = 1,
               region: list[bool] | None = None, previews: bool = True,
               decoders=None) -> Generator[Event, None, Drawn]:
        """Draw the reply to the conversation's last turn: yields Event('text') with the words so
        far and, with `previews`, Event('preview') per row of the first picture; returns Drawn.

        n: a batch of replies drawn together from one seed. region: 256 booleans, True where the
        picture being edited may change (inputs.mask_grid); codes outside it are kept exactly.
        decoders: where the transformer's passes run (generate.generate_ids)."""
        cond, uncond, reference = self._prompt(conversation, settings.max_words)
        fixed = None
        if region is not None:
            if reference is None:
                raise SessionError("a mask needs a picture to edit: attach one or draw one first")
            fixed = [None if redraw else code for redraw, code in zip(region, reference)]
            settings = replace(settings, picture="always")
        stream, stats = self.model.stream, SpeculationStats()
        text_ids: list[list[int]] = [[] for _ in range(n)]
        codes: list[list[int]] = [[] for _ in range(n)]
        canvas = PreviewCanvas(self.model.vq) if previews else None     # the first picture's previews
        for step in generate_ids(self.model.lm, stream, cond, uncond, config=settings.sampling(), n=n, seed=seed,
                                 drafter=self.drafter(settings, reference), stats=stats, fixed=fixed,
                                 decoders=decoders):
            for r, t in enumerate(step.tokens):
                if stream.is_text_id(t):
                    text_ids[r].append(t)
                elif stream.is_image_id(t):
                    codes[r].append(t - stream.image_offset)
            first = step.tokens[0]
            if stream.is_text_id(first):
                yield Event("text", text=stream.text.decode(text_ids[0]))
            elif canvas is not None and stream.is_image_id(first) and len(codes[0]) % IMAGE_SIDE == 0:
                yield Event("preview", image=canvas.image(codes[0]), rows=len(codes[0]) // IMAGE_SIDE)
        finished = [tuple(c) for c in codes if len(c) == IMAGE_TOKENS]
        shown = self.pictures(finished, [seed] * len(finished), settings, canvas)
        return Drawn(text=stream.text.decode(text_ids[0]).strip(), codes=finished,
                     images=[with_background(im, settings) for im in shown], stats=stats, prompt_ids=cond)

    def drafter(self, settings: Settings, reference: tuple[int, ...] | None):
        """What drafts codes (and words) for speculative decoding, as `settings.speculative` asks:
        the shipped draft model (a neighbour table or a small transformer), else copies of the
        picture being edited (CopyDrafter); None with speculation off."""
        mode = settings.speculative
        draft = getattr(self.model, "draft", None)
        if mode == "off":
            return None
        if mode == "draft" or (mode == "auto" and draft is not None):
            if draft is None:
                raise SessionError("no draft model is loaded; use speculative='copy' or 'off'")
            if isinstance(draft, NeighbourTable):
                return NeighbourDrafter(draft, list(reference) if reference is not None else None)
            return ModelDrafter(draft)
        return CopyDrafter(list(reference) if reference is not None else None)

    # --- decode and refine ---------------------------------------------------------------------
    def decode(self, codes_list: list, canvas: PreviewCanvas | None = None) -> list[Image.Image]:
        """The pictures of `codes_list`; one the canvas's last preview already decoded is reused."""
        known = [canvas.decoded(c) if canvas is not None else None for c in codes_list]
        todo = [c for c, im in zip(codes_list, known) if im is None]
        start = time.perf_counter()
        fresh = iter(self.model.vq.decode(torch.tensor(todo).view(-1, IMAGE_SIDE, IMAGE_SIDE)) if todo else [])
        work = self.model.picture_work
        work.decoded += len(todo)
        work.decode_seconds += time.perf_counter() - start
        return [im if im is not None else next(fresh) for im in known]

    def pictures(self, codes_list: list, seeds: list[int | None], settings: Settings,
                 canvas: PreviewCanvas | None = None) -> list[Image.Image]:
        """Drawn pictures as shown: decoded, then refined when asked and a refiner is loaded.
        Each is refined on its own with its reply's seed, so the history and a reloaded session
        show exactly the picture the reply showed. Pictures a user gave (seed None) are not refined."""
        images = self.decode(codes_list, canvas)
        refiner = getattr(self.model, "refiner", None)
        if not settings.refine or refiner is None:
            return images
        return [im if seed is None else self._refined_picture(im, tuple(codes), seed)
                for im, codes, seed in zip(images, codes_list, seeds)]

    def _refined_picture(self, image: Image.Image, codes: tuple[int, ...], seed: int) -> Image.Image:
        """The refiner's output for these codes and seed; a picture shown before is not refined again."""
        key = (codes, seed)
        if key not in self._refined:
            start = time.perf_counter()
            self._refined[key] = self.model.refiner.refine(image, seed=seed)
            work = self.model.picture_work
            work.refined += 1
            work.refine_seconds += time.perf_counter() - start
            while len(self._refined) > SHOWN_CACHE:
                self._refined.popitem(last=False)
        self._refined.move_to_end(key)
        return self._refined[key].copy()      # callers may draw on theirs; the cached one stays clean


def with_background(image: Image.Image, settings: Settings) -> Image.Image:
    """A reply's picture with the background the settings ask for."""
    return make_transparent(image) if settings.background == "transparent" else image


def run_to_end(events: Generator):
    """Run a generator to its end, dropping what it yields; what it returns."""
    while True:
        try:
            next(events)
        except StopIteration as end:
            return end.value
