"""Two `mmgen eval` results on the same cases, compared case by case.

    python -m mmgen.eval.compare before.json after.json

At n = 50 a share moves by 0.06 when three cases flip, and two checkpoints, or two decodings, differ
on many cases in both directions: a difference in the summary alone says little. Both runs grade the
same cases (the benchmark's cases depend only on --n and --split; --seed changes only the sampling),
so each pass/fail is paired, and McNemar's exact test asks whether the cases only one run passes lean one way more than
chance would (a fair coin over the discordant cases): p, two-sided. This is what a checkpoint is
shipped on, and what a training run's "moved a figure" means.
"""
from __future__ import annotations

import argparse
import json
import sys
from math import comb
from pathlib import Path

# per part: the key naming a case (the same cases in both runs) and the pass/fail metrics compared
CASE_KEYS = {"edit": "instruction", "plural": "instruction", "ask": "question", "chain": "question",
             "var": "instruction", "nopic": "question", "smalltalk": "message"}
METRICS = {"edit": ("changed", "preserved"), "plural": ("changed", "preserved"), "ask": ("passed",),
           "chain": ("passed",), "var": ("passed",), "nopic": ("passed",), "smalltalk": ("passed",)}


class CompareError(ValueError):
    """The two results cannot be compared case by case."""


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: the chance that a fair coin over the only_a + only_b discordant
    cases splits at least as unevenly."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _case_lists(results: dict) -> dict[str, tuple[str, list[dict], tuple[str, ...]]]:
    """{label: (case key, cases, metrics)} for every part held: generation per category, words
    drawn and read apart."""
    out = {}
    for part, cases in results.items():
        if part == "gen":
            for category, listed in cases.items():
                out[f"gen/{category}"] = ("prompt", listed, ("passed",))
        elif part == "words":
            for side, listed in cases.items():
                key = "prompt" if side == "drawn" else "question"
                out[f"words/{side}"] = (key, listed, ("passed",))
        elif part in CASE_KEYS:
            out[part] = (CASE_KEYS[part], cases, METRICS[part])
    return out


def compare(a: dict, b: dict) -> list[dict]:
    """Rows for every part and metric both results hold: the shares, the cases only one passes,
    and McNemar's p. Raises CompareError where the cases differ (another --n or --split)."""
    rows = []
    lists_a, lists_b = _case_lists(a["results"]), _case_lists(b["results"])
    shared = [k for k in lists_a if k in lists_b]
    gen = [k for k in shared if k.startswith("gen/")]
    if len(gen) > 1:               # every category's cases pooled: the overall figure, paired
        for lists in (lists_a, lists_b):
            lists["gen (all)"] = ("prompt", [c for k in gen for c in lists[k][1]], ("passed",))
        shared.insert(shared.index(gen[-1]) + 1, "gen (all)")
    for label in shared:
        key, cases_a, metrics = lists_a[label]
        _, cases_b, _ = lists_b[label]
        names_a, names_b = [c.get(key) for c in cases_a], [c.get(key) for c in cases_b]
        if names_a != names_b:
            raise CompareError(f"{label}: the two runs graded different cases (run both with the same "
                               f"--n and --split)")
        for metric in metrics:
            pa, pb = [bool(c[metric]) for c in cases_a], [bool(c[metric]) for c in cases_b]
            only_a = sum(x and not y for x, y in zip(pa, pb))
            only_b = sum(y and not x for x, y in zip(pa, pb))
            rows.append({"part": label if len(metrics) == 1 else f"{label} {metric}", "cases": len(pa),
                         "a": sum(pa) / max(1, len(pa)), "b": sum(pb) / max(1, len(pb)),
                         "only_a": only_a, "only_b": only_b, "p": mcnemar_p(only_a, only_b)})
    if not rows:
        raise CompareError("the two runs share no part (compare results of the same --parts)")
    return rows


def format_rows(rows: list[dict], names: tuple[str, str]) -> str:
    a, b = (n[:8] for n in names)
    lines = [f"{'part':<28} {'cases':>5} {a:>8} {b:>8} {'only A':>7} {'only B':>7} {'p':>6}", "-" * 75]
    for r in rows:
        mark = " *" if r["p"] < 0.05 else ""
        lines.append(f"{r['part']:<28} {r['cases']:>5} {r['a']:>8.3f} {r['b']:>8.3f} {r['only_a']:>7} "
                     f"{r['only_b']:>7} {r['p']:>6.3f}{mark}")
    lines.append("only A / only B: cases one run passes and the other fails; p: McNemar's exact test, "
                 "* below 0.05")
    return "\n".join(lines)


def _load(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise CompareError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise CompareError(f"{path} is not an `mmgen eval --out` result (no 'results')")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmgen.eval.compare", description=__doc__.split("\n")[0])
    ap.add_argument("a", help="the first `mmgen eval --out` JSON (the baseline)")
    ap.add_argument("b", help="the second, on the same cases")
    args = ap.parse_args(argv)
    try:
        rows = compare(_load(args.a), _load(args.b))
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_rows(rows, (Path(args.a).stem, Path(args.b).stem)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
