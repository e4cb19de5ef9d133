"""Train the transformer on conversations: `mmgen train lm`.

    mmgen train lm --out runs/lm            # world conversations, preset "small" (a new run never
                                            # starts over a checkpoint: checkpoints/lm is the default)
    mmgen train lm --resume                 # continue from checkpoints/lm (weights + schedule position)
    mmgen train lm --data convs.jsonl --out runs/real     # real conversations (`mmgen world export` format)
    mmgen train lm --data shards/world --out runs/lm      # pre-encoded conversations (`mmgen data encode`)
    mmgen train lm --init-from PATH --out runs/real       # start from a pretrained Hugging Face causal LM
    mmgen train lm --resume --workers 12 --minutes 7.5 --batch-tokens 65536 --lr 2e-3   # a lent GPU
    accelerate launch --multi_gpu --num_processes 8 -m mmgen.train.lm …   # several GPUs (DDP), same flags

New models get row/column embeddings on image codes and the previous picture's code at the
same place (model.StreamEmbedding); a checkpoint resumed without them gets them at zero.
Loss falls on what the assistant says — words and picture codes alike. Each user message's
words are emptied with probability 0.1 (CFG dropout). bf16 autocast on CPUs with AMX and on
CUDA (--no-bf16: fp32); cosine schedule with warmup; a progress bar with loss and tokens/s; a
validation loss on held-out conversations every --eval-every steps, recorded with the mean
training loss since the last; atomic checkpoints every --save-every steps that record steps,
tokens seen and wall time in config.json.

With N processes (`accelerate launch`, DDP) a step trains on what one process would: every
process builds the same global batch of --batch-tokens and keeps its share of the rows, and the
loss is divided by the whole batch's weighted label count, so the averaged gradients and the
reported loss are the global batch's (tests/test_accelerate.py checks this against one process).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

DEFAULT_OUT = "checkpoints/lm"
DEFAULT_VQ = "checkpoints/vq"
RESUME_WARMUP = 50        # steps of warmup after a resume
# Letter places join a trained model at zero, and while no attention head reads them their
# gradients are small: at the base rate they reached a norm of ~0.1 in 150 steps against token
# embeddings of ~1.0. A larger rate (and no weight decay pulling them back) lets them grow to
# where heads can start to use them; everything else learns at the base rate.
# (Word and picture letters join at zero too, but need no head: each lands on the position that
# predicts from it, so its matrix learns at the base rate, as the reference code's does.)
LETTER_PLACES_LR_SCALE = 10.0
TEXT_WEIGHT = 4.0         # words vs codes in the loss; why: train/loss.py


def add_mix_arguments(p: argparse.ArgumentParser) -> None:
    """The shares of the world's conversation kinds a run trains on (`data_mix`)."""
    p.add_argument("--sign-rate", type=float, default=0.0,
                   help="share of world conversations about a sign (a word drawn, changed or read); "
                        "0 keeps the world's own mix, where a third of pictures carry a sign")
    p.add_argument("--chain-rate", type=float, default=0.0,
                   help="share of the world conversations that are not told scenes that are edit chains "
                        "(2-5 edits, then questions about what changed: world.conversation.sample_chain)")
    p.add_argument("--quiz-rate", type=float, default=0.0,
                   help="share of the world conversations that are neither told scenes nor edit chains that "
                        "are quizzes (pictures, mostly the user's, each asked 1-4 different questions, the "
                        "word first half the time when there is a sign: world.conversation.sample_quiz)")
    p.add_argument("--group-rate", type=float, default=0.0,
                   help="share of the world conversations that are none of told scenes, edit chains and "
                        "quizzes that are group conversations (a picture with shapes that share a shape or a "
                        "colour, then 1-3 edits of several shapes at once or of size: "
                        "world.conversation.sample_group)")
    p.add_argument("--told-rate", type=float, default=0.0,
                   help="share of world conversations that are told scenes (no picture: the user describes "
                        "one in words and asks a quiz's questions about it, ~125 tokens each: "
                        "world.conversation.sample_told)")
    p.add_argument("--walk-rate", type=float, default=0.0,
                   help="share of world conversations whose count, \"is there …?\" and \"where are the …?\" "
                        "answers first walk through the picture's shapes, marking each with the running count "
                        "or \"no\" (world.questions.walk): \"the red circle at the top: one, … — two\"")
    p.add_argument("--typo-rate", type=float, default=0.0, help="share of user messages with a typing slip "
                   "in one word (world.typos: \"yelow\"), the reply the clean message's")
    p.add_argument("--no-picture-rate", type=float, default=0.0,
                   help="share of world conversations that open with a question asked before any picture, "
                        "answered \"There's no picture yet …\" (world.conversation.asked_before_a_picture)")
    p.add_argument("--small-talk-rate", type=float, default=0.0,
                   help="share of world conversations holding a greeting, thanks or a goodbye, answered in a "
                        "line with no picture (world.conversation.with_small_talk)")
    p.add_argument("--drill-rate", type=float, default=None,
                   help="share of quiz pictures and told scenes with two or more shapes that are drills: asked "
                        "only colour checks in pairs, counts of different things, or where things are (default "
                        "world.conversation.DRILL_RATE, kinds weighed by DRILL_SHARES; 1 with --quiz-rate 1: "
                        "a drill phase, where a colour check's yes or no starts to follow the colours and a "
                        "count or a place the picture)")
    p.add_argument("--drill-kinds", type=_drill_kinds, default=None, metavar="KIND[,KIND]",
                   help="drill only these kinds, weighed among themselves by DRILL_SHARES: "
                        "color_check, count, cells, locate (default: all of them)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small", help="model size: tiny | small | base | large")
    p.add_argument("--out", default=DEFAULT_OUT, help="checkpoint folder (written atomically)")
    p.add_argument("--vq", default=DEFAULT_VQ, help="image tokenizer checkpoint")
    p.add_argument("--tokenizer", default=None, help="text tokenizer folder (default: the repo's tokenizer/)")
    p.add_argument("--data", default=None, help="conversations instead of the world: a JSONL file or a shard folder (`mmgen data encode`)")
    p.add_argument("--init-from", default=None, help="a pretrained Hugging Face causal LM folder to start from")
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--steps", type=int, default=60_000, help="total optimizer steps of the schedule")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps in this run")
    p.add_argument("--minutes", type=float, default=None,
                   help="run this many minutes, with the cosine schedule laid over them instead of --steps "
                        "(for a machine lent for a fixed time)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes rendering world pictures (0: render in this process); a GPU needs ~8+")
    add_mix_arguments(p)
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="padded tokens per batch (the global batch: several processes split its rows)")
    p.add_argument("--max-len", type=int, default=1536, help="longest conversation, in tokens")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--cfg-dropout", type=float, default=0.1)
    p.add_argument("--text-weight", type=float, default=TEXT_WEIGHT,
                   help="weight of each word's loss relative to an image code's (train.loss.StreamLoss)")
    p.add_argument("--image-positions", action=argparse.BooleanOptionalAction, default=True,
                   help="row/column embeddings on image codes (model.StreamEmbedding); added, at zero, "
                        "to a checkpoint resumed or started from without them")
    p.add_argument("--reference-codes", action=argparse.BooleanOptionalAction, default=True,
                   help="with --image-positions: also feed the code at the same place in the previous "
                        "picture (model.StreamEmbedding), added at zero the same way")
    p.add_argument("--letter-places", action=argparse.BooleanOptionalAction, default=True,
                   help="a learned place vector on each letter of a word and of a picture's lettering "
                        "(added at zero to a checkpoint without them)")
    p.add_argument("--word-letters", action=argparse.BooleanOptionalAction, default=True,
                   help="with --letter-places: where each code of a picture is predicted, the letter of the "
                        "latest word a sign would draw in its column (model.word_letter_ids), added at zero")
    p.add_argument("--picture-letters", action=argparse.BooleanOptionalAction, default=True,
                   help="with --letter-places: on each word after a picture, the lettering codes of the sign's "
                        "letter the next capital would spell (model.picture_letter_codes), added at zero")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 (no autocast) where bf16 would be used")


def lr_at(step: int, *, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay to min_ratio · peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(min(1.0, (step - warmup) / max(1, total - warmup)), peak=peak, min_ratio=min_ratio)


def cosine(t: float, *, peak: float, min_ratio: float) -> float:
    """The cosine decay at fraction t ∈ [0, 1] of the schedule: peak at 0, min_ratio · peak at 1."""
    t = min(1.0, max(0.0, t))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_stream(args):
    from ..io import read_json
    from ..stream import Stream
    from ..text import TOKENIZER_DIR, TextTokenizer
    tok_dir = args.tokenizer or (args.init_from if args.init_from else (args.out if args.resume else TOKENIZER_DIR))
    text = TextTokenizer.from_pretrained(tok_dir)
    codebook = read_json(Path(args.vq) / "config.json")["codebook_size"]
    return Stream(text, codebook), text


def _drill_kinds(text: str) -> tuple:
    """`--drill-kinds`: a comma-separated list of DRILL_SHARES's kinds."""
    from ..world.conversation import DRILL_SHARES
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in DRILL_SHARES]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'none'} (drill kinds are "
                                         f"{', '.join(DRILL_SHARES)})")
    return kinds


def check_arguments(args) -> None:
    """Refuse flag values that cannot train, with a message (before anything is loaded)."""
    if args.text_weight <= 0:
        raise SystemExit(f"mmgen train: --text-weight must be positive, not {args.text_weight}")
    if args.minutes is not None and args.minutes <= 0:
        raise SystemExit(f"mmgen train: --minutes must be positive, not {args.minutes}")
    drill_rate = data_mix(args)["drill_rate"]
    for flag, rate in (("--sign-rate", args.sign_rate), ("--chain-rate", args.chain_rate),
                       ("--quiz-rate", args.quiz_rate), ("--group-rate", args.group_rate),
                       ("--told-rate", args.told_rate), ("--walk-rate", args.walk_rate),
                       ("--typo-rate", args.typo_rate), ("--no-picture-rate", args.no_picture_rate),
                       ("--small-talk-rate", args.small_talk_rate), ("--drill-rate", drill_rate)):
        if not 0 <= rate <= 1:
            raise SystemExit(f"mmgen train: {flag} must lie in [0, 1], not {rate}")
    if args.drill_kinds and not ((args.quiz_rate > 0 or args.told_rate > 0) and drill_rate > 0):
        raise SystemExit("mmgen train: --drill-kinds needs quizzes or told scenes with drills "
                         "(--quiz-rate or --told-rate, and --drill-rate, above 0)")
    if args.workers < 0:
        raise SystemExit(f"mmgen train: --workers must be 0 or more, not {args.workers}")
    for flag, every in (("--save-every", args.save_every), ("--eval-every", args.eval_every)):
        if every < 1:
            raise SystemExit(f"mmgen train: {flag} must be 1 or more, not {every}")


def check_out(args) -> None:
    """A new run (not --resume) would replace what --out holds at its first save: refused."""
    if not args.resume and (Path(args.out) / "config.json").is_file():
        raise SystemExit(f"mmgen train: {args.out} already holds a checkpoint, which a new run would replace: "
                         "--out picks another folder (--resume continues a transformer there)")


def load_or_build_model(args, stream, device, glyph_codes=()):
    """The transformer to train (resumed, from a pretrained LM, or new) and its progress record."""
    from ..model import add_image_positions, attention_implementation, build_model, load_model
    progress = {"steps": 0, "tokens": 0, "wall_seconds": 0.0}
    if args.resume:
        model = load_model(args.out, device=device)
        progress.update(getattr(model.config, "mmgen_training", {}) or {})
        model.train()
    elif args.init_from:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(args.init_from, use_safetensors=True,
                                                     attn_implementation=attention_implementation(device))
        model.resize_token_embeddings(stream.vocab_size)   # grown rows hold the specials and image codes
    else:
        model = build_model(args.preset, stream.vocab_size, seed=args.seed)
    if args.image_positions:
        letters = stream.letter_ids(glyph_codes) if args.letter_places else None
        add_image_positions(model, stream.image_start, stream.image_offset, reference=args.reference_codes,
                            letters=letters, word_letters=bool(letters) and args.word_letters,
                            picture_letters=bool(letters) and args.picture_letters)
    model.config.mmgen_stream = {"text_vocab": stream.text_vocab, "codebook_size": stream.codebook_size,
                                 "special_tokens": list(stream.special), "image_offset": stream.image_offset}
    # the name says the model's shape: a resumed checkpoint keeps its own (a grown model is no preset)
    if not args.resume or not getattr(model.config, "mmgen_preset", None):
        model.config.mmgen_preset = args.preset
    return model, progress


def data_mix(args) -> dict:
    """The shares of world conversations that are told scenes, about a sign, edit chains, quizzes and
    group conversations, or whose answers walk, or that open with a question before any picture, or that
    hold small talk, of user messages with a typing slip, and of quiz pictures that are drills."""
    from ..world.conversation import DRILL_RATE
    return {"sign_rate": args.sign_rate, "chain_rate": args.chain_rate, "quiz_rate": args.quiz_rate,
            "group_rate": args.group_rate, "told_rate": args.told_rate, "walk_rate": args.walk_rate,
            "typo_rate": args.typo_rate, "no_picture_rate": args.no_picture_rate,
            "small_talk_rate": args.small_talk_rate,
            "drill_rate": DRILL_RATE if args.drill_rate is None else args.drill_rate,
            "drill_kinds": args.drill_kinds}


def training_source(args, stream, vq, cache, device, progress: dict):
    """Conversations to train on: a shard, a JSONL file, or the world (rendered here or in workers).
    Every process reads the same conversations in the same order (`share_of` splits each batch)."""
    from ..data import jsonl_conversations, world_conversations, world_conversations_parallel
    from ..shards import ShardError, is_shard, read_shard, vq_fingerprint
    if args.data and is_shard(args.data):      # pictures already encoded: `mmgen data encode`
        try:
            return read_shard(args.data, codebook_size=stream.codebook_size, vq_fingerprint=vq_fingerprint(args.vq))
        except ShardError as e:
            raise SystemExit(f"mmgen train lm: {e}") from None
    if args.data:
        return jsonl_conversations(args.data, vq.encode)
    # seeds continue where the last run stopped, so a resumed run sees new conversations
    start = progress["steps"] * 997
    if args.workers:
        encode_pixels = lambda x: vq.encode_tensor(x.to(device).float() / 255)   # noqa: E731
        return world_conversations_parallel(encode_pixels, workers=args.workers, split="train", start=start,
                                            mix=data_mix(args))
    return world_conversations(cache, split="train", start=start, mix=data_mix(args))


def step_lr(args, step: int, start_step: int, elapsed: float | None) -> float:
    """The learning rate of `step`: the cosine over --steps, or over this run's --minutes when
    `elapsed` (the fraction of them gone) is given; a resumed run warms up again."""
    if elapsed is None:
        lr = lr_at(step, peak=args.lr, warmup=args.warmup, total=args.steps, min_ratio=args.min_lr_ratio)
    else:             # the schedule runs over this run's minutes, warmup in steps as ever
        lr = cosine(elapsed, peak=args.lr, min_ratio=args.min_lr_ratio)
        if not args.resume:
            lr *= min(1.0, (step - start_step + 1) / args.warmup)
    if args.resume:   # Adam's moments start afresh (they are not shipped): warm up again
        lr *= min(1.0, (step - start_step + 1) / RESUME_WARMUP)
    return lr


def record_validation(progress: dict, step: int, val: dict, train: float) -> None:
    """The latest validation loss, and its point on the learning curve (with `train`, the mean
    training loss since the last point), which travels with the checkpoint across resumed runs
    and sessions."""
    progress["val"] = val
    progress.setdefault("curve", []).append({"step": step, "tokens": progress["tokens"], "train": round(train, 4),
                                             **{k: round(v, 4) for k, v in val.items()}})


def evaluate(accelerator, model, stream, conversations, progress: dict, step: int, train: float) -> None:
    """The validation loss after `step`, printed and recorded on the learning curve with `train`."""
    from .common import validation_loss
    val = validation_loss(accelerator.unwrap_model(model), stream, conversations, accelerator.device,
                          bf16=accelerator.mixed_precision == "bf16")
    accelerator.print(f"\nstep {step}: train loss {train:.4f} | val loss text {val['text']:.4f} "
                      f"image {val['image']:.4f} | tokens seen {progress['tokens'] / 1e6:.1f} M")
    record_validation(progress, step, val, train)


def make_optimizer(model, args):
    """AdamW, with weight decay on matrices only (not on norms' gains); letter places learn at
    LETTER_PLACES_LR_SCALE × the rate (each group's `lr_scale`, applied by the loop)."""
    import torch
    named = list(model.named_parameters())
    places = [p for n, p in named if n.endswith("letter_places")]
    decay = [p for n, p in named if p.ndim >= 2 and not n.endswith("letter_places")]
    no_decay = [p for n, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    if places:
        groups.append({"params": places, "weight_decay": 0.0, "lr_scale": LETTER_PLACES_LR_SCALE})
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), fused=False)


def load_teacher(path: str, stream, device):
    """The frozen transformer a draft model is distilled from; its ids must be the stream's."""
    from ..model import load_model
    teacher = load_model(path, device=device)
    if teacher.config.vocab_size != stream.vocab_size:
        raise SystemExit(f"the teacher at {path} has {teacher.config.vocab_size} ids, the stream {stream.vocab_size}")
    return teacher.requires_grad_(False)


def out_of_time(accelerator, mine: bool) -> bool:
    """Whether this run's minutes are spent; with several processes, every rank stops at the same step."""
    import torch
    if accelerator.num_processes == 1:
        return mine
    return bool(accelerator.reduce(torch.tensor(float(mine), device=accelerator.device), "max"))


def record_run(progress: dict, args, accelerator) -> None:
    """Each run's data mix and schedule travel with the checkpoint beside its learning curve."""
    progress.setdefault("runs", []).append({
        "from_step": progress["steps"], **data_mix(args), "lr": args.lr, "text_weight": args.text_weight,
        "batch_tokens": args.batch_tokens, "minutes": args.minutes, "autocast": accelerator.mixed_precision,
        "processes": accelerator.num_processes})
    # the pipeline keeps conversations inside the longest length the model has seen
    progress["max_len"] = max(args.max_len, progress.get("max_len", 0)) if args.resume else args.max_len


def run_bounds(args, start_step: int) -> tuple[float | None, int]:
    """(seconds this run may take or None, the step after its last): --minutes lets time decide."""
    if args.minutes is None:
        return None, min(args.steps, start_step + (args.stop_after or args.steps))
    return args.minutes * 60, start_step + (args.stop_after or 10 ** 9)


def start_process(args):
    """CPU threads, and the Accelerator (one process, or DDP under `accelerate launch`)."""
    import torch
    from accelerate import Accelerator

    from .common import autocast_dtype
    if args.threads:
        torch.set_num_threads(args.threads)
    return Accelerator(mixed_precision="no" if args.no_bf16 else autocast_dtype())


def share_of(batch, rank: int, world: int, pad_id: int):
    """This process's rows of the global batch: rows rank, rank + world, …. A process left
    without a row (a batch of fewer rows than processes) gets one row of padding: it has no
    labels, so it adds nothing to the loss or the gradients, and DDP's collectives stay in step."""
    import torch

    from ..data import IGNORE_INDEX, Batch
    if world == 1:
        return batch
    rows = slice(rank, None, world)
    ids, labels, mask = batch.input_ids[rows], batch.labels[rows], batch.attention_mask[rows]
    if len(ids) == 0:
        ids = torch.full_like(batch.input_ids[:1], pad_id)
        labels, mask = torch.full_like(ids, IGNORE_INDEX), torch.zeros_like(ids)
    return Batch(ids, labels, mask, int(mask.sum()))


def train_step(model, optimizer, accelerator, batch, norm: float):
    """One optimizer step on this process's rows → the global batch's loss (a tensor, on every process).

    `norm` is the global batch's weighted label count over the number of processes: each process's
    loss is its rows' weighted sum over that, so the gradients DDP averages (and clips) are those of
    the global batch's mean loss, and the mean of the processes' losses is that loss."""
    with accelerator.autocast():
        loss = model(batch.input_ids, batch.labels, norm)["loss"]   # right-padded: no mask needed
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return accelerator.reduce(loss.detach(), "mean")


def taught_words(args) -> frozenset[str] | None:
    """The words the training messages use, stored with the checkpoint so that a reply can name the
    words of a message it was never taught (unknown_words.py): those this run's world mix teaches,
    and, resumed, those the checkpoint was taught before. With --data, only the earlier ones: real
    conversations teach an open vocabulary, and a note about every rare word would be noise."""
    from ..eval.vocabulary import mix_of, training_vocabulary
    from ..unknown_words import load_vocabulary
    try:
        earlier = (load_vocabulary(args.out) if args.resume else None) or frozenset()
    except ValueError as e:
        raise SystemExit(f"mmgen train lm: {e}") from None
    if args.data:
        return earlier or None
    return earlier | training_vocabulary(()) | training_vocabulary(mix_of(data_mix(args)))


def run(args, teacher_path: str | None = None) -> int:
    """Train; with `teacher_path`, distil that transformer into this one (the draft model)."""
    import torch
    from tqdm import tqdm

    from ..data import CodeCache, batches, prefetched, validation_conversations
    from ..model import count_parameters
    from ..vq import VQTokenizer
    from .common import save_lm_checkpoint
    from .loss import StreamLoss

    check_arguments(args)
    check_out(args)
    accelerator = start_process(args)
    device = accelerator.device
    stream, text = build_stream(args)
    vq = VQTokenizer.from_pretrained(args.vq).to(device).eval()

    glyph_codes = vq.glyphs.glyph_ids.tolist() if vq.glyphs is not None else ()
    model, progress = load_or_build_model(args, stream, device, glyph_codes)
    model.to(device)
    accelerator.print(f"model: {count_parameters(model) / 1e6:.1f} M parameters, vocab {stream.vocab_size}, "
                      f"autocast {accelerator.mixed_precision}, device {device}")

    optimizer = make_optimizer(model, args)
    teacher = load_teacher(teacher_path, stream, device) if teacher_path else None
    lm = model
    loss_model = StreamLoss(lm, stream.image_offset, teacher, text_weight=args.text_weight)
    model, optimizer = accelerator.prepare(loss_model, optimizer)

    rank, world = accelerator.process_index, accelerator.num_processes
    cache = CodeCache(vq.encode)
    source = training_source(args, stream, vq, cache, device, progress)
    # a pool of conversations is sorted by length and cut into batches: several batches a pool;
    # every process draws the same batches (same conversations, same seed) and trains on its share
    pool = max(64, 4 * args.batch_tokens // 512)
    train_batches = prefetched(batches(stream, source, batch_tokens=args.batch_tokens, max_len=args.max_len,
                                       seed=args.seed + progress["steps"], pool=pool, cfg_dropout=args.cfg_dropout))
    val_convs = validation_conversations(vq.encode)
    vocabulary = taught_words(args) if accelerator.is_main_process and teacher is None else None

    start_step = progress["steps"]
    record_run(progress, args, accelerator)
    budget, last = run_bounds(args, start_step)
    bar = tqdm(range(start_step, last), initial=0, total=None if budget else last - start_step,
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    t0, tokens_window, t_window = time.time(), 0, time.time()
    wall_before = progress["wall_seconds"]
    train_sum, train_steps = torch.zeros((), device=device), 0     # training losses since the last evaluation
    try:
        for step in bar:
            lr = step_lr(args, step, start_step, None if budget is None else (time.time() - t0) / budget)
            for g in optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            batch = next(train_batches)
            norm = max(1.0, loss_model.weight(batch.labels)) / world
            loss = train_step(model, optimizer, accelerator, share_of(batch, rank, world, stream.pad).to(device), norm)
            train_sum, train_steps = train_sum + loss, train_steps + 1
            progress["steps"] = step + 1
            progress["tokens"] += batch.n_tokens
            tokens_window += batch.n_tokens
            if step % 10 == 0:   # tokens a second over the last ten steps
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}",
                                tok_s=f"{tokens_window / max(1e-6, time.time() - t_window):.0f}")
                tokens_window, t_window = 0, time.time()
            done = step + 1 == last or (budget is not None and out_of_time(accelerator, time.time() - t0 >= budget))
            if (step + 1) % args.eval_every == 0 or done:
                evaluate(accelerator, model, stream, val_convs, progress, step + 1, train_sum.item() / train_steps)
                train_sum, train_steps = train_sum * 0, 0
            if accelerator.is_main_process and ((step + 1) % args.save_every == 0 or done):
                progress["wall_seconds"] = round(wall_before + time.time() - t0, 1)
                save_lm_checkpoint(lm, text, args.out, progress, vocabulary)
            if done:
                break
    finally:
        train_batches.close()     # stops the prefetching thread (and the renderers)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mmgen train lm", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
