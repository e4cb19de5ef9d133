"""`mmgen chat` (also `python chat.py`): talk to the model in a terminal.

    python chat.py                                   # the shipped model
    python chat.py --checkpoints runs/lm --seed 0 --out pictures/ --graphics blocks

Type a message and press Enter. A picture forms top-down while it is drawn, redrawn in place as
its rows arrive: in the terminal's own graphics (kitty, iTerm2 or sixel, detected from TERM,
TERM_PROGRAM, KITTY_WINDOW_ID…; `--graphics` overrides), else as Unicode half-blocks with 24-bit
colour, and not at all when stdout is not a terminal (piped output has no escape codes). Every
picture is saved under --out (PNG with provenance) and its path printed; the conversation is
saved only by /save. Ctrl-C stops the picture being drawn and leaves the conversation as it was.
At the prompt, Ctrl-C says how to leave (and whether the conversation is unsaved) and a second
Ctrl-C in a row leaves, as Ctrl-D and /quit do.
Slash commands: /help /new /undo /retry /save /load /attach /set /history /quit. What you type
is kept for the up-arrow in ~/.mmgen_history (or --history-file); --no-history or
MMGEN_NO_HISTORY=1 keeps none. Every mistake is one line, never a traceback; a paste that is not
UTF-8 is refused by name (inputs.check_text). The pictures themselves are drawn by termimage.py.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import re
import shlex
import sys
import textwrap
import time
import typing
from pathlib import Path
from typing import Callable

from .inputs import SessionError, check_seed, seed_after, user_path
from .oneshot import BadInput, add_model_options, add_picture_options, load_model, one_line_errors, settings_from
from .settings import PICTURE_MODES, Settings, setting_help
from .termimage import MODES, Canvas, detect, terminal_size

COMMANDS = {    # name: (argument, what it does)
    "help": ("", "this list"),
    "new": ("", "start a new conversation (settings are kept)"),
    "undo": ("", "forget your last message and its reply"),
    "retry": ("", "answer your last message again, with another seed"),
    "save": ("[path]", "save the conversation (default: a dated file in the pictures folder)"),
    "load": ("path", "continue a saved conversation"),
    "attach": ("path", "send a picture with your next message"),
    "set": ("[key=value ...]", "change settings, e.g. /set cfg=5 picture=always (alone: show them)"),
    "history": ("", "the conversation so far"),
    "quit": ("", "leave (Ctrl-D does the same)"),
}
NONE_WORDS = ("none", "null", "off")
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
DEFAULT_HISTORY = Path("~/.mmgen_history")    # what was typed, for the up-arrow (history_file)
HISTORY_LENGTH = 1000
NO_HISTORY_ENV = "MMGEN_NO_HISTORY"            # set (to anything but 0) to keep no history file


class CommandError(ValueError):
    """A mistake in a slash command, shown as one line."""


# --- parsing what was typed ----------------------------------------------------------------------
def parse_command(line: str) -> tuple[str, str] | None:
    """('name', 'argument') for a slash command; None for a message ('//…' sends a message starting with '/')."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    parts = line[1:].split(None, 1)
    if not parts:
        raise CommandError("type a command after the slash, e.g. /help")
    name, arg = parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""
    if name not in COMMANDS:
        raise CommandError(f"unknown command /{name}; /help lists the commands")
    wants = COMMANDS[name][0]
    if not wants and arg:
        raise CommandError(f"/{name} takes nothing after it")
    if wants == "path" and not arg:
        raise CommandError(f"/{name} needs a file, e.g. /{name} {'picture.png' if name == 'attach' else 'chat.json'}")
    return name, arg


def parse_path(arg: str) -> Path:
    """A path as typed: taken literally, or in quotes ('my chat.json' or "my chat.json")."""
    if arg[:1] in "'\"":
        try:
            words = shlex.split(arg)
        except ValueError:
            raise CommandError("the quotes around that path do not match") from None
        if len(words) != 1:
            raise CommandError("give one path")
        arg = words[0]
    try:
        return user_path(arg)
    except SessionError as e:
        raise CommandError(str(e)) from None


def setting_names() -> list[str]:
    """What /set takes: the session's settings, and its seed."""
    return Settings.names() + ["seed"]


def parse_value(key: str, text: str):
    """A typed value for a setting, from what was typed after 'key='."""
    if key == "picture":
        if text.lower() not in PICTURE_MODES:
            raise CommandError(f"picture must be one of {', '.join(PICTURE_MODES)}")
        return text.lower()
    hints = typing.get_type_hints(Settings)
    if key == "seed":
        kind, optional = int, False
    elif key in hints:
        args = typing.get_args(hints[key])          # int | None -> (int, NoneType)
        optional = type(None) in args
        kind = next((a for a in args if a is not type(None)), hints[key])
    else:
        raise CommandError(f"unknown setting {key!r}; settings are {', '.join(setting_names())}")
    word = text.strip().lower()
    if optional and word in NONE_WORDS:
        return None
    if kind is bool:
        if word not in BOOL_WORDS:
            raise CommandError(f"{key} must be true or false, not {text!r}")
        return BOOL_WORDS[word]
    if kind is int:
        try:
            value = int(word)
        except ValueError:
            raise CommandError(f"{key} must be a whole number{' or none' if optional else ''}, not {text!r}") from None
        return check_seed(value) if key == "seed" else value      # the seed's range, checked before anything is set
    if kind is float:
        try:
            value = float(word)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise CommandError(f"{key} must be a number{' or none' if optional else ''}, not {text!r}")
        return value
    return text.strip()


def parse_settings(arg: str) -> dict:
    """'cfg=5 temperature=0.8' -> {'cfg': 5.0, 'temperature': 0.8}; spaces around '=' are allowed ('cfg = 5')."""
    values = {}
    for item in re.sub(r"\s*=\s*", "=", arg).split():
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise CommandError(f"write settings as key=value, e.g. /set cfg=5 (got {item!r})")
        values[key.lower()] = parse_value(key.lower(), text)
    return values


def picture_name(prompt: str, picture_id: str) -> str:
    """A readable file name: the prompt's first words and the picture's id."""
    slug = "-".join(re.findall(r"[a-z0-9]+", prompt.lower())[:6])[:40].strip("-") or "picture"
    return f"{slug}-{picture_id.removeprefix('img_')}.png"


# --- the conversation on screen ------------------------------------------------------------------
class WordWrap:
    """Streamed words on lines `width` columns wide. The terminal itself breaks a long line at its
    edge, mid-word; here a word is written once it is whole (a space or the end follows it), on a
    new line when it would cross the edge. Words arrive as pieces of words, so each waits for its end."""

    def __init__(self, write: Callable[[str], None], width: int, column: int = 0):
        self.write, self.width, self.column, self.word = write, max(1, width), column, ""

    def feed(self, text: str) -> None:
        for piece in re.split(r"([ \n])", text):
            if piece in (" ", "\n"):
                self.flush()
                if piece == "\n" or self.column >= self.width:
                    self.write("\n")
                    self.column = 0
                else:
                    self.write(" ")
                    self.column += 1
            else:
                self.word += piece

    def flush(self) -> None:
        """Write the word held back (at the end of the words, or before anything else is shown)."""
        if self.word:
            if self.column and self.column + len(self.word) > self.width:
                self.write("\n")
                self.column = 0
            self.write(self.word)
            self.column += len(self.word)
            self.word = ""


class Terminal:
    def __init__(self, model, chat, *, out_dir: Path, mode: str, lines: int | None = None,
                 history: Path | None = None, stdout=None, stderr=None, interactive: bool = True):
        self.model, self.chat, self.out_dir, self.mode = model, chat, out_dir, mode
        self.interactive = interactive         # typed at a prompt (a piped script is never asked to confirm)
        self.lines = lines                     # picture height in terminal lines; None: fit the terminal
        self.history = history                 # the file what is typed is kept in; None: kept nowhere
        self.stdout, self.stderr = stdout or sys.stdout, stderr or sys.stderr
        self.attachment = None                 # (path, PIL image) to send with the next message
        self.stopped = None                    # (message, attachment, conversation, seed) whose reply Ctrl-C stopped
        self.saved: dict[str, Path] = {}       # picture id -> the file it was saved to
        self.on_disk = chat.conversation       # the conversation as last saved or loaded
        self.command = None                    # the slash command being handled: (name, argument)
        self.warned = None                     # the /new or /load just warned of losing unsaved turns
        self.warned_before = None              # ... and the one warned of on the line before this one

    def say(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)
        self.stdout.flush()

    def warn(self, text: str) -> None:
        self.stdout.flush()
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def banner(self) -> None:
        self.say(f"mmgen chat · {self.model.name} on {self.model.device} · pictures are saved in {self.out_dir}/")
        self.say('Type a message and press Enter, e.g. "draw a red circle", then "make it blue".')
        self.say("/help lists the commands · Ctrl-C stops a picture · Ctrl-D, /quit or Ctrl-C twice leaves")
        if self.history is not None:
            self.say(f"What you type is kept in {self.history} for the up-arrow "
                     f"(--no-history or {NO_HISTORY_ENV}=1: kept nowhere)")

    def prompt(self) -> str:
        return "(+picture) > " if self.attachment else "> "

    def unsaved(self) -> bool:
        """Whether leaving now loses turns: the conversation has changed since /save or /load."""
        return bool(self.chat.conversation.turns) and self.chat.conversation != self.on_disk

    def how_to_leave(self) -> str:
        """What the first Ctrl-C at the prompt says."""
        hint = "Ctrl-C again, Ctrl-D or /quit leaves"
        return hint + ("; this conversation is not saved (/save keeps it)" if self.unsaved() else "")

    def size(self) -> tuple[int, int, tuple]:
        """Columns, rows and (if known) the cell size in pixels; 80 × 24 when stdout is not a terminal."""
        try:
            cols, rows, *cell = terminal_size(self.stdout.fileno())
        except (AttributeError, OSError, ValueError):     # not a real file (tests): a fixed size
            return 80, 24, (0, 0)
        return cols, rows, tuple(cell)

    def canvas(self) -> Canvas:
        """A picture area sized to the terminal: square, at most 32 lines, room left for text."""
        lines = self.lines
        cols, rows, cell = self.size()
        if lines is None:
            lines = max(4, min(32, rows - 8, (cols - 1) // 2))
        # a fresh kitty image id per picture: reusing one would replace older pictures still on screen
        return Canvas(self.stdout, self.mode, lines, cell=tuple(cell), image_id=random.randrange(1, 2**31))

    # --- replies --------------------------------------------------------------------------------
    def reply(self, text: str, seed: int | None = None) -> None:
        """Stream the reply: words as they come, then the picture redrawn in place row by row. A reply
        Ctrl-C stops is remembered, so /retry can send its message again."""
        drawn_with = self.chat.turn_seed() if seed is None else seed       # the seed the session draws with
        sent, self.stopped = (text, self.attachment, self.chat.conversation, drawn_with), None
        if self.play(self.chat.stream(text, self.attachment[1] if self.attachment else None, seed=seed)) == "stopped":
            self.stopped = sent

    def play(self, events) -> str | None:
        """Show a stream of session events; Ctrl-C stops it and leaves the conversation as it was
        ("stopped" is returned then)."""
        before = self.chat.conversation
        canvas, shown, done = None, "", None
        wrap = WordWrap(lambda s: self.say(s, end=""), self.size()[0] - 1, column=len("mmgen: "))
        try:
            for event in events:
                if event.kind == "text":
                    # the words so far; a trailing U+FFFD is half a character, wait for the rest
                    words = event.text.lstrip().rstrip("\ufffd")
                    if not shown and words:
                        self.say("mmgen: ", end="")
                    if words.startswith(shown):
                        wrap.feed(words[len(shown):])
                        shown = words
                elif event.kind in ("preview", "image"):
                    if canvas is None:
                        wrap.flush()
                        self.say("" if shown else "mmgen:")
                        canvas = self.canvas()
                    canvas.draw(event.image)
                elif event.kind == "done":
                    done = event.reply
        except KeyboardInterrupt:
            wrap.flush()
            events.close()
            finished = self.chat.conversation is not before
            self.say("\n" + ("stopped, but the reply had already finished (/undo forgets it)" if finished
                             else "stopped; the conversation is as it was (/retry sends it again)"))
            return None if finished else "stopped"
        except SessionError as e:
            wrap.flush()
            if shown or canvas:
                self.say()
            self.warn(str(e))
            return
        finally:
            if canvas:
                canvas.close()
        if done is None:
            return
        if canvas is None and not shown:          # words only, none streamed: say them now
            self.say(f"mmgen: {done.text.strip()}")
        elif canvas is None:                      # end the streamed line with anything it lacks
            final = done.text.strip()
            wrap.feed(final[len(shown):] if final.startswith(shown) else "")
            wrap.flush()
            self.say()
        if done.note:                             # words the model was never taught
            self.say(textwrap.fill(f"({done.note})", self.size()[0] - 1, break_long_words=False))
        self.attachment = None
        self.keep(done)

    def keep(self, reply) -> None:
        """Save the reply's pictures, each named after its own id, and say where."""
        for i, picture_id in enumerate(reply.ids):
            path = self.out_dir / picture_name(reply.prompt, picture_id)
            try:
                reply.save(path, index=i)
            except (OSError, ValueError) as e:
                self.warn(f"could not save the picture to {path}: {getattr(e, 'strerror', None) or e}")
                continue
            self.saved[picture_id] = path
            self.say(f"saved {path}")

    def show(self, reply_text: str, image) -> None:
        """A finished reply at once (no streaming): words, then its picture."""
        self.say(f"mmgen: {reply_text}" if reply_text else "mmgen:")
        if image is not None and self.mode != "none":
            canvas = self.canvas()
            try:
                canvas.draw(image)
            finally:
                canvas.close()

    # --- slash commands -------------------------------------------------------------------------
    def cmd_help(self, arg: str) -> None:
        for name, (wants, what) in COMMANDS.items():
            self.say(f"  /{name + (' ' + wants if wants else ''):<22} {what}")
        self.say("Anything else is a message; start it with // to send one that begins with a slash.")
        self.say(f"Settings for /set: {', '.join(setting_names())}.")

    def check_discard(self) -> None:
        """Before /new or /load drops an unsaved conversation typed at the prompt: warn, and go ahead
        only when the very next line is the same command (a piped script is never asked)."""
        if self.interactive and self.unsaved() and self.warned_before != self.command:
            self.warned = self.command
            raise CommandError(f"this conversation is not saved: /save keeps it; /{self.command[0]} again goes "
                               "ahead without it")

    def cmd_new(self, arg: str) -> None:
        self.check_discard()
        self.chat.new()
        self.attachment = None
        self.say("new conversation")

    def cmd_undo(self, arg: str) -> None:
        if self.chat.undo():
            self.say(f"forgot the last exchange ({len(self.chat.conversation.turns)} messages left)")
        else:
            self.say("nothing to undo")

    def cmd_retry(self, arg: str) -> None:
        if self.stopped is not None and self.stopped[2] is self.chat.conversation:
            # the message whose reply was stopped, nothing said since: send it again, with the next seed
            # after the stopped try's (a stopped retry moves on again, never back to a seed it tried);
            # a picture attached since goes with it instead of the stopped one's
            text, attachment, _, seed = self.stopped
            self.attachment = self.attachment or attachment
            self.say("answering your stopped message again...")
            self.reply(text, seed=seed_after(seed))
            return
        # the new reply replaces the old one only once it is finished: Ctrl-C keeps the old one
        turns = self.chat.conversation.turns
        if len(turns) < 2 or turns[-2].role != "user":
            raise CommandError("there is no message to retry")
        self.say("answering again...")
        self.play(self.chat.retry_stream())

    def cmd_save(self, arg: str) -> None:
        path = parse_path(arg) if arg else self.out_dir / time.strftime("session-%Y%m%d-%H%M%S.json")
        try:
            self.chat.save(path)
        except OSError as e:
            raise CommandError(f"cannot save to {path}: {e.strerror or e}") from None
        self.on_disk = self.chat.conversation
        self.say(f"saved the conversation to {path}")

    def cmd_load(self, arg: str) -> None:
        from .session import ChatSession
        path = parse_path(arg)
        loaded = ChatSession.load(path, self.model)           # a damaged file raises, nothing changes
        self.check_discard()
        self.chat = loaded
        self.on_disk = self.chat.conversation
        self.attachment = None
        self.say(f"loaded {path}: {len(self.chat.conversation.turns)} messages")
        if self.chat.conversation.turns:
            last = self.chat.conversation.turns[-1]
            self.show(last.text, self.chat.last_image)

    def cmd_attach(self, arg: str) -> None:
        from .inputs import read_image
        path = parse_path(arg)
        image = read_image(path)
        self.attachment = (path, image)
        self.say(f"attached {path} ({image.width}×{image.height}); it goes with your next message")

    def cmd_set(self, arg: str) -> None:
        if not arg:
            from dataclasses import asdict
            current = {**asdict(self.chat.settings), "seed": self.chat.seed}
            self.say(" ".join(f"{k}={v}" for k, v in current.items()))
            return
        values = parse_settings(arg)
        # every value is checked before any changes: a bad one changes nothing
        self.chat.set(**{k: v for k, v in values.items() if k != "seed"})
        if "seed" in values:
            self.chat.seed = values["seed"]
        self.say("set " + " ".join(f"{k}={v}" for k, v in values.items()))

    def cmd_history(self, arg: str) -> None:
        turns = self.chat.to_dict()["turns"]          # no pictures decoded just to list them
        if not turns:
            self.say("no messages yet")
        for i, turn in enumerate(turns, 1):
            note = ""
            if turn["codes"] is not None:
                saved = self.saved.get(turn["id"])
                note = (" [picture attached]" if turn["role"] == "user" else
                        f" [picture {turn['id']}, seed {turn['seed']}{f', {saved}' if saved else ''}]")
            text = turn["text"] if len(turn["text"]) <= 100 else turn["text"][:99] + "…"
            self.say(f"{i:3} {'you' if turn['role'] == 'user' else 'mmgen'}: {text}{note}")

    def handle(self, line: str) -> bool:
        """Act on one line; False when it is time to leave."""
        line = line.strip()
        if not line:
            return True
        self.warned_before, self.warned = self.warned, None        # a warning holds for the next line only
        try:
            command = self.command = parse_command(line)
            if command is None:
                self.reply(line[1:] if line.startswith("//") else line)
            elif command[0] == "quit":
                return False
            else:
                getattr(self, f"cmd_{command[0]}")(command[1])
        except (CommandError, SessionError) as e:
            self.warn(str(e))
        except KeyboardInterrupt:
            self.say("\nstopped")
        except Exception as e:      # keep the conversation alive whatever broke; say what it was
            self.warn(f"something went wrong: {type(e).__name__}: {e}")
        return True

    def loop(self, read: Callable[[str], str], interactive: bool = True) -> None:
        """Read and handle lines until Ctrl-D, /quit, or Ctrl-C twice in a row at the prompt (once
        says how to leave, and whether the conversation is unsaved). Piped input ends at its end."""
        interrupted = False                             # the last thing at the prompt was Ctrl-C
        while True:
            try:
                line = read(self.prompt())
            except EOFError:                            # Ctrl-D
                if interactive:
                    self.say()                          # off the prompt's line
                return
            except KeyboardInterrupt:
                if not interactive:
                    return
                if interrupted:
                    self.say()                          # off the prompt's line
                    return
                interrupted = True
                self.say("\n" + self.how_to_leave())
                continue
            interrupted = False
            if not self.handle(line):
                return


# --- input ---------------------------------------------------------------------------------------
def history_file(args: argparse.Namespace, environ=os.environ) -> Path | None:
    """Where what is typed is kept between chats: --history-file or ~/.mmgen_history; None when
    --no-history or MMGEN_NO_HISTORY (set, and not 0) says to keep it nowhere."""
    if args.no_history or environ.get(NO_HISTORY_ENV, "0") not in ("", "0"):
        return None
    try:
        path = user_path(args.history_file or DEFAULT_HISTORY)
    except SessionError as e:
        raise BadInput(f"--history-file: {e}") from None
    if args.history_file is None and path == DEFAULT_HISTORY:     # no home folder to expand "~" to
        return None
    return path


def setup_readline(path: Path | None) -> Callable[[], None]:
    """Up-arrow history (kept in `path` between chats; with None, only during this one), Tab
    completes slash commands; returns the function that saves the history."""
    try:
        import readline
    except ImportError:                    # Windows without pyreadline: plain input
        return lambda: None
    readline.set_history_length(HISTORY_LENGTH)
    if path is not None:
        try:
            readline.read_history_file(path)
        except OSError:                    # no history yet, or unreadable: start empty
            pass

    def complete(text: str, state: int):
        matches = [f"/{name}" for name in COMMANDS if f"/{name}".startswith(text)] if text.startswith("/") else []
        return matches[state] if state < len(matches) else None
    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    readline.parse_and_bind("bind ^I rl_complete" if "libedit" in (readline.__doc__ or "") else "tab: complete")

    def save() -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass
    return save


def read_piped(prompt: str) -> str:
    """Input when stdin is not a terminal: lines as they come, no prompt."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


# --- the command ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    one_line_errors(parser)
    add_model_options(parser)
    add_picture_options(parser)
    parser.add_argument("--out", default="mmgen-pictures", metavar="DIR", help="where pictures are saved (default ./mmgen-pictures)")
    parser.add_argument("--load", metavar="SESSION", help="continue a conversation saved with /save")
    parser.add_argument("--graphics", choices=("auto",) + MODES, default="auto",
                        help="how pictures are shown (auto: detect the terminal)")
    parser.add_argument("--picture", choices=PICTURE_MODES,
                        help=setting_help("picture", "whether replies draw: auto (the model decides), always, never"))
    parser.add_argument("--history-file", metavar="PATH",
                        help=f"where what you type is kept for the up-arrow, between chats (default {DEFAULT_HISTORY})")
    parser.add_argument("--no-history", action="store_true",
                        help=f"keep what you type nowhere (so does {NO_HISTORY_ENV}=1)")


def picture_folder(arg: str) -> Path:
    """The --out folder, made if missing; BadInput when pictures cannot be written there."""
    try:
        folder = user_path(arg)
    except SessionError as e:
        raise BadInput(f"--out: {e}") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot save pictures in {folder}: {e.strerror or e} (--out DIR picks another "
                       "folder)") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"cannot save pictures in {folder}: no permission to write there (--out DIR picks "
                       "another folder)")
    return folder


def run(args: argparse.Namespace) -> int:
    from .session import ChatSession
    interactive = sys.stdin.isatty()
    try:
        settings = settings_from(args)
        history = history_file(args) if interactive else None
        if sys.stdout.isatty():
            print("loading the model...", end="\r", flush=True)
        model = load_model(args.checkpoints)
        if args.load:
            chat = ChatSession.load(args.load, model)
            chat.set(**settings)
            if args.seed is not None:
                chat.seed = args.seed
        else:
            chat = model.chat(seed=args.seed, **settings)
        out_dir = picture_folder(args.out)          # said now, not after the first picture is drawn
    except (BadInput, SessionError) as e:
        print(f"mmgen chat: {e}", file=sys.stderr)
        return 2
    mode = args.graphics if args.graphics != "auto" else detect(os.environ, sys.stdout.isatty())
    term = Terminal(model, chat, out_dir=out_dir, mode=mode, history=history, interactive=interactive)
    term.banner()
    if args.load:
        term.say(f"continuing {args.load}: {len(chat.conversation.turns)} messages")
    # bytes that are not UTF-8 (a paste in another encoding) are read as lone surrogates, which the
    # session refuses by name (inputs.check_text), where strict decoding would raise inside input()
    sys.stdin.reconfigure(errors="surrogateescape")
    save_history = setup_readline(history) if interactive else None
    try:
        term.loop(input if interactive else read_piped, interactive)
    finally:
        if save_history:
            save_history()
    term.say("bye")
    return 0
