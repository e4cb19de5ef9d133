"""Every knob of a reply, with its one name and its one default, from the session to the sampler.

    chat = mmgen.load().chat(cfg=3, picture="always")       # the session's Settings
    chat.send("a red star", temperature=0.8)                  # one call's override
    Settings().sampling()                                     # what decoding reads (generate.py)

`Settings` is what users set (the Python API, `/set` in the terminal, the command-line options,
the server's extensions). `SamplingConfig` is the part of it that decoding reads, under the same
names, made per reply by `Settings.sampling()`; its defaults are the Settings' own. The command
line's help and the server read their defaults and ranges from here. No torch here, so
`mmgen generate --help` stays instant.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .inputs import SessionError

PICTURE_MODES = ("auto", "always", "never")
SPECULATIVE_MODES = ("auto", "draft", "copy", "off")
BACKGROUNDS = ("opaque", "transparent", "auto")
# the numeric knobs: their kind and range, inclusive; the command line's help quotes them
RANGES = {"cfg": (float, 0, 20), "word_cfg": (float, 0, 20), "temperature": (float, 0, 5),
          "word_temperature": (float, 0, 5), "draft_k": (int, 1, 15), "max_words": (int, 1, 512)}


@dataclass
class Settings:
    """Per-session defaults; every one can be overridden per call (`send(..., cfg=5)`)."""
    # picture codes are sampled cooler than the model's raw distribution (temperature < 1) and guided
    # (cfg > 1): these two scored best of the temperatures and guidance strengths tried on the
    # generation benchmark. The reply's words are greedy: the likeliest plan. Guidance's unconditional
    # twin skips the reply as well as the request (guide_reply; docs/RESULTS.md), so guidance pushes
    # the picture towards the plan; a twin that reads the plan pushes it towards the request's words
    # beyond the plan, and "a circle and a star" then draws the circle first wherever the plan put it.
    cfg: float = 2.0                 # classifier-free guidance on picture codes; 1 = no guidance
    # guidance on the reply's words while the conversation holds no picture: the plan of its first
    # picture (generate.py); 1 = none. 1.5 wrote the most plans that match their prompt of 1, 1.25,
    # 1.5, 1.75 and 2 (benchmarks/plans.py)
    word_cfg: float = 1.5
    temperature: float = 0.6         # picture codes; 0: greedy
    word_temperature: float = 0.0    # the reply's words; 0: greedy, the likeliest plan, exact answers
    top_k: int | None = None         # picture codes: keep the k likeliest
    top_p: float | None = None       # picture codes: keep the smallest set whose probability is ≥ p
    guide_reply: bool = True         # guidance's unconditional twin reads neither request nor reply (True) or the reply (generate.py)
    max_words: int = 96              # the longest reply in text tokens before its picture (a plan: up to ~64)
    picture: str = "auto"            # auto: the model decides whether to draw; always; never (words only)
    speculative: str = "auto"        # auto: the draft model if shipped, else copy drafting; or off
    # the most codes (and words) drafted per verify pass; a neighbour table with confidences stops
    # sooner where a draft is unlikely to be kept (speculative.CopyDrafter), so a high cap costs little
    # where drafts fail and saves passes over flat background: 15 was the fastest of 8, 12 and 15
    # (docs/RESULTS.md; `benchmarks/generate.py --draft-k 8 12 15` compares them)
    draft_k: int = 15
    background: str = "opaque"       # "transparent": RGBA with the flat background cut out
    provenance: bool = True          # PNG metadata + IPTC trainedAlgorithmicMedia marker on save
    # refining is on by default only because benchmarks/refiner.py measured it better on the shipped
    # checkpoints (see the README's figures); it is a no-op when no refiner is shipped
    refine: bool = True              # clean drawn pictures with the diffusion refiner, when one is shipped

    def __post_init__(self):
        checks = [
            *(in_range(name, getattr(self, name)) for name in RANGES),
            (self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 1), "top_k must be a positive integer"),
            (self.top_p is None or (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1),
             "top_p must be in (0, 1]"),
            (self.picture in PICTURE_MODES, f"picture must be one of {', '.join(PICTURE_MODES)}"),
            (self.speculative in SPECULATIVE_MODES, f"speculative must be one of {', '.join(SPECULATIVE_MODES)}"),
            (self.background in BACKGROUNDS, f"background must be one of {', '.join(BACKGROUNDS)}"),
            (isinstance(self.provenance, bool), "provenance must be true or false"),
            (isinstance(self.refine, bool), "refine must be true or false"),
            (isinstance(self.guide_reply, bool), "guide_reply must be true or false"),
        ]
        for ok, message in checks:
            if not ok:
                raise SessionError(message)

    def with_overrides(self, overrides: dict) -> "Settings":
        """These settings with `overrides` in place, names and values checked (a bad one is SessionError)."""
        unknown = set(overrides) - set(self.names())
        if unknown:
            raise SessionError(f"unknown setting(s) {', '.join(sorted(unknown))}; "
                               f"settings are {', '.join(self.names())}")
        return replace(self, **overrides)

    def sampling(self) -> "SamplingConfig":
        """What decoding reads of these settings, for one reply."""
        return SamplingConfig(**{f.name: getattr(self, f.name) for f in fields(SamplingConfig)})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def in_range(name: str, value) -> tuple[bool, str]:
    """(whether `value` is a number of the knob's kind in its range, the message if not)."""
    kind, lo, hi = RANGES[name]
    kinds = int if kind is int else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and lo <= value <= hi
    return ok, f"{name} must be {'an integer' if kind is int else 'a number'} in [{lo}, {hi}]"


@dataclass(frozen=True)
class SamplingConfig:
    """The settings decoding reads (generate.py, sampling.py, speculative.py): the same names, and the
    Settings' defaults, so `SamplingConfig()` decodes as a chat does. Made by `Settings.sampling()`;
    tests and tools may build one directly (it is not checked: `max_words=0` skips the words)."""
    cfg: float = Settings.cfg
    word_cfg: float = Settings.word_cfg
    temperature: float = Settings.temperature
    word_temperature: float = Settings.word_temperature
    top_k: int | None = Settings.top_k
    top_p: float | None = Settings.top_p
    guide_reply: bool = Settings.guide_reply
    max_words: int = Settings.max_words
    picture: str = Settings.picture
    draft_k: int = Settings.draft_k


def setting_help(name: str, what: str) -> str:
    """A command-line option's help: what it does, then the setting's range and default from here."""
    default = getattr(Settings, name)
    if name in RANGES:
        _, lo, hi = RANGES[name]
        return f"{what}, {lo}-{hi} (default {default})"
    if isinstance(default, bool):
        return f"{what} (default: {'on' if default else 'off'})"
    return f"{what} (default {default})"
