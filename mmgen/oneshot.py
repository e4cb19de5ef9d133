"""One-shot commands: a picture, an edit or an answer, straight from the command line.

    mmgen generate "two blue squares" -o out.png            # -n 3 writes out-1.png … out-3.png
    mmgen generate "a red star" -n 2 -o "star-{i}.webp" --seed 7 --background transparent
    mmgen edit in.png "make the circle blue" -o out.png     # prints the reply's words, then out.png
    mmgen ask in.png "what does the sign say?"              # prints the answer (a change is refused:
                                                            # "make it blue" is for `mmgen edit`)

Pictures are saved with provenance (PNG text + the IPTC generated-media marker) unless
--no-provenance. Bad input (an empty or oversized prompt, binary junk, a missing or damaged
picture, an output path that cannot be written, a bad option value) is one line on stderr and
exit code 2, never a traceback. Cheap checks run before torch is imported, so mistakes fail fast.
The helpers at the top (one-line argparse errors, model and picture options, quiet loading) are
shared with `mmgen chat` (terminal.py). Each command lists only the options that change what it
does: ask draws nothing, so it has no picture options.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .inputs import MAX_PICTURES, MAX_SEED, NotAQuestion, SessionError, check_seed, check_text, read_image, user_path
from .settings import BACKGROUNDS, Settings, setting_help

PICTURE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")
MAX_N = MAX_PICTURES                       # the most pictures one reply draws (one batch)


class BadInput(Exception):
    """A mistake in what the user gave us: reported as one line, exit code 2."""


# --- shared with the chat command --------------------------------------------------------------
def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse report a bad option as one line (its default prints the whole usage first)."""
    def error(message: str):
        parser.exit(2, f"{parser.prog}: {message} (see --help)\n")
    parser.error = error


# the settings the command line sets with options of the same names (--no-provenance aside);
# a command without one of these options (generate has no --picture) leaves it out
SETTING_OPTIONS = ("cfg", "word_cfg", "temperature", "background", "refine", "picture")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that talks to the model shares."""
    parser.add_argument("--checkpoints", metavar="PATH", help="checkpoints folder (default: the shipped one)")
    parser.add_argument("--seed", type=seed_option, help=f"random seed, 0-{MAX_SEED} (default: a fresh one)")


def add_picture_options(parser: argparse.ArgumentParser, *, first_picture: bool = True) -> None:
    """The options of the pictures a reply draws (ask shows none); a setting left out keeps its default.
    `first_picture`: whether the conversation may start without a picture (edit's never does), so
    that --word-cfg, guidance on the words before the first one, can apply."""
    parser.add_argument("--cfg", type=float, help=setting_help("cfg", "classifier-free guidance on pictures"))
    if first_picture:
        parser.add_argument("--word-cfg", type=float, help=setting_help(
            "word_cfg", "guidance on the reply before the conversation's first picture"))
    parser.add_argument("--temperature", type=float,
                        help=setting_help("temperature", "sampling temperature for pictures"))
    parser.add_argument("--background", choices=BACKGROUNDS,
                        help=setting_help("background", "transparent: cut the flat background out (RGBA)"))
    parser.add_argument("--no-provenance", action="store_true",
                        help="save pictures without the generated-media metadata")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help=setting_help("refine", "clean pictures with the diffusion refiner when one is shipped"))


def seed_option(text: str) -> int:
    """--seed's value: an integer the session takes (inputs.check_seed), else argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = text                    # not a whole number: check_seed says what a seed is
    try:
        return check_seed(value)
    except SessionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def settings_from(args: argparse.Namespace) -> dict:
    """Session settings given on the command line (those left out keep the session's defaults)."""
    settings = {k: getattr(args, k) for k in SETTING_OPTIONS if getattr(args, k, None) is not None}
    if getattr(args, "no_provenance", False):
        settings["provenance"] = False
    try:
        Settings(**settings)
    except SessionError as e:
        raise BadInput(str(e)) from None
    return settings


def load_model(checkpoints: str | None):
    """The model (mmgen.load, quietly: no progress bars); a missing or mismatched folder is BadInput."""
    import mmgen
    try:
        return mmgen.load(checkpoints)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot load the model from {checkpoints or 'the shipped checkpoints'}: {e}") from None


# --- checks that need no torch -----------------------------------------------------------------
def check_argument(text: str, what: str) -> str:
    """The session's own check of a message (inputs.check_text), before importing torch."""
    try:
        return check_text(text, f"the {what}")
    except SessionError as e:
        raise BadInput(str(e)) from None


def check_output(path: str) -> Path:
    """A path a picture can be written to: a known extension, not a folder, a writable folder above."""
    out = typed_path(path)
    if out.is_dir():
        raise BadInput(f"{out} is a folder; give a file name such as {out / 'picture.png'}")
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise BadInput(f"cannot save as {out.name!r}: the name must end in {', '.join(PICTURE_SUFFIXES)}")
    problem = unwritable(out)
    if problem:
        raise BadInput(problem)
    return out


def unwritable(out: Path) -> str | None:
    """Why a file cannot be written at `out` (None: it can). Writers here make missing folders, so
    the first folder above that exists must be one we may write in."""
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot write {out}: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write {out}: no permission to write in {parent}"
    return None


def numbered(path: Path, n: int) -> list[Path]:
    """Output paths for n pictures: '{i}' in the name is replaced by 1…n, else '-1', '-2' … before
    the extension (and one picture keeps the name as given)."""
    if "{i}" in path.name:
        return [path.with_name(path.name.replace("{i}", str(i))) for i in range(1, n + 1)]
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, n + 1)]


def typed_path(path: str) -> Path:
    """inputs.user_path, its refusal as BadInput."""
    try:
        return user_path(path)
    except SessionError as e:
        raise BadInput(str(e)) from None


def check_picture(path: str) -> str:
    picture = typed_path(path)
    if not picture.is_file():
        raise BadInput(f"no picture at {path}")
    return str(picture)


def read_picture(path: str):
    try:
        return read_image(path)
    except SessionError as e:
        raise BadInput(str(e)) from None


def print_words(reply) -> None:
    """The reply's words, as the chat would show them (nothing when it said none); a note about
    words of the message the model was never taught goes to stderr, apart from the answer."""
    if reply.text.strip():
        print(reply.text.strip())
    if reply.note:
        print(f"note: {reply.note}", file=sys.stderr)


def save_all(reply, paths: list[Path]) -> None:
    """Save the reply's pictures, each with its own provenance id (Reply.metadata), printing each path."""
    for i, path in enumerate(paths):
        try:
            reply.save(path, index=i)
        except (OSError, ValueError, SessionError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise BadInput(f"cannot write {path}: {reason}") from None
        print(path)


def answer(model, args, settings: dict, text: str, **kwargs):
    """The model's reply; the session's own refusal of its input (SessionError) is BadInput."""
    try:
        return model.chat(seed=args.seed, **settings).send(text, **kwargs)
    except SessionError as e:
        raise BadInput(str(e)) from None


def guarded(prog: str, work) -> int:
    """Run `work()`; BadInput becomes one line on stderr and exit code 2."""
    try:
        return work()
    except BadInput as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2


# --- the commands --------------------------------------------------------------------------------
class Generate:
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        one_line_errors(parser)
        parser.add_argument("prompt", help="what to draw")
        parser.add_argument("-o", "--out", required=True, metavar="FILE",
                            help="where to save (.png/.webp/.jpg); with -n, '{i}' in the name or -1, -2 … is added")
        parser.add_argument("-n", type=int, default=1, help=f"how many pictures, 1-{MAX_N} (one batch)")
        add_model_options(parser)
        add_picture_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        def work() -> int:
            if not 1 <= args.n <= MAX_N:
                raise BadInput(f"-n must be from 1 to {MAX_N}, not {args.n}")
            paths = numbered(check_output(args.out), args.n)
            prompt = check_argument(args.prompt, "prompt")
            settings = settings_from(args)
            model = load_model(args.checkpoints)
            reply = answer(model, args, settings, prompt, n=args.n, picture="always")
            print_words(reply)
            save_all(reply, paths)
            return 0
        return guarded("mmgen generate", work)


class Edit:
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        one_line_errors(parser)
        parser.add_argument("image", help="the picture to change")
        parser.add_argument("instruction", help='what to change, e.g. "make the circle blue"')
        parser.add_argument("-o", "--out", required=True, metavar="FILE", help="where to save (.png/.webp/.jpg)")
        add_model_options(parser)
        add_picture_options(parser, first_picture=False)

    def run(self, args: argparse.Namespace) -> int:
        def work() -> int:
            source = check_picture(args.image)
            out = check_output(args.out)
            instruction = check_argument(args.instruction, "instruction")
            settings = settings_from(args)
            picture = read_picture(source)
            model = load_model(args.checkpoints)
            reply = answer(model, args, settings, instruction, image=picture, picture="always")
            print_words(reply)
            save_all(reply, [out])
            return 0
        return guarded("mmgen edit", work)


class Ask:
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        one_line_errors(parser)
        parser.add_argument("image", help="the picture to ask about")
        parser.add_argument("question", help='e.g. "what does the sign say?"')
        add_model_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        def work() -> int:
            source = check_picture(args.image)
            question = check_argument(args.question, "question")
            settings = settings_from(args)
            picture = read_picture(source)
            model = load_model(args.checkpoints)
            try:
                reply = model.chat(seed=args.seed, **settings).ask(question, image=picture)
            except NotAQuestion as e:
                raise BadInput(f"{e}; to make it: {edit_command(args, question)}") from None
            except SessionError as e:
                raise BadInput(str(e)) from None
            print_words(reply)
            return 0
        return guarded("mmgen ask", work)


def edit_command(args: argparse.Namespace, instruction: str) -> str:
    """The `mmgen edit` command line that makes the change `instruction` asks of `args.image`."""
    words = ["mmgen", "edit", args.image, instruction, "-o", "out.png"]
    if args.checkpoints:
        words += ["--checkpoints", args.checkpoints]
    if args.seed is not None:
        words += ["--seed", str(args.seed)]
    return shlex.join(words)


generate, edit, ask = Generate(), Edit(), Ask()
