"""Load on `mmgen serve`: requests one after another against requests at once, on one server.

    python benchmarks/server_load.py                                     # the shipped checkpoints
    python benchmarks/server_load.py --tiny                              # a tiny random model made on the spot
    python benchmarks/server_load.py --batch 1                           # the server drawing one at a time

Starts the server as a person would (`python -m mmgen.cli serve ...` on a free loopback port), then,
in one run on that one server: `--requests` (16) images.generate-style requests (POST
/v1/images/generations, one picture each, distinct prompts and seeds) sent one after another, the
same requests all at once — side by side: wall time, throughput and its ratio, latency — and
`--load` (50) requests at once (p50/p95 latency). The server draws requests that wait together
(continuous batching, mmgen/batching.py), each with its own seed, so every picture drawn at once
is compared with the same request's picture drawn alone: they should be equal (rounding in shared
passes could in principle change a code; never seen so far). Checks every answer (HTTP 200, a
128×128 PNG), checks the server is healthy afterwards and still answers, prints its batching
counters, then stops it with SIGINT. Exits 1 only if an answer was lost or wrong — never on a
time. All traffic stays on 127.0.0.1; every request has a timeout.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


def batch_counters(port: int) -> dict | None:
    """The shared passes' counters on /health, with the decoding and refining after them under
    "pictures" (None: a server without the shared batch)."""
    status, health = request(port, "GET", "/health", timeout=10)
    if status != 200 or not health.get("batch"):
        return None
    return {**health["batch"], "pictures": health.get("pictures") or {}}


def picture_costs(a: dict | None, b: dict | None, n: int) -> dict | None:
    """Seconds a picture spent, between two counter readings over n pictures: in the shared passes,
    decoding and refining (None when the counters are missing or no pass ran)."""
    if not (a and b and b["tokens"] > a["tokens"]):
        return None
    pa, pb = a["pictures"], b["pictures"]
    tokens = b["tokens"] - a["tokens"]
    return {"passes": b["passes"] - a["passes"], "tokens": tokens / n,
            "ms_per_token": 1000 * (b["pass_seconds"] - a["pass_seconds"]) / tokens,
            "pass": (b["pass_seconds"] - a["pass_seconds"]) / n,
            "decode": (pb.get("decode_seconds", 0) - pa.get("decode_seconds", 0)) / n,
            "refine": (pb.get("refine_seconds", 0) - pa.get("refine_seconds", 0)) / n}


def make_tiny_checkpoints(root: Path) -> Path:
    """A tiny random image tokenizer + transformer (as tests/conftest.py makes): the plumbing, not the pictures."""
    import torch

    from mmgen.model import build_model
    from mmgen.stream import Stream
    from mmgen.text import TextTokenizer
    from mmgen.vq import PRESETS, VQTokenizer
    text = TextTokenizer.from_pretrained()
    torch.manual_seed(0)
    vq = VQTokenizer(PRESETS["tiny"])
    vq.save_pretrained(root / "vq")
    lm = build_model("tiny", Stream(text, vq.codebook_size).vocab_size, seed=0)
    lm.config.mmgen_preset = "tiny"
    lm.save_pretrained(root / "lm")
    text.save_pretrained(root / "lm")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 600.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def check_picture(status: int, body) -> str | None:
    """None if the answer is one valid 128×128 PNG, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {body.get('error', {}).get('message') if isinstance(body, dict) else body}"
    try:
        data = body["data"]
        if len(data) != 1:
            return f"{len(data)} pictures instead of 1"
        image = Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"])))
        image.load()
    except Exception as e:      # noqa: BLE001 — any failure to read the answer is a wrong answer
        return f"unreadable answer: {type(e).__name__}: {e}"
    if image.format != "PNG" or image.size != (128, 128):
        return f"a {image.format} of {image.size}, not a 128×128 PNG"
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


PROMPTS = ["draw {k} red circles", "a large orange star in the center on a black background",
           "three green triangles", "a blue square at the top left and a yellow circle at the bottom right",
           "two purple stars on a white background"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoints", type=Path, help="checkpoints folder for the server (default: the shipped one)")
    which.add_argument("--tiny", action="store_true", help="make a tiny random model in a temporary folder")
    parser.add_argument("--requests", type=int, default=16, help="requests sent one after another, then at once")
    parser.add_argument("--load", type=int, default=50, help="requests at once for the latency percentiles")
    parser.add_argument("--batch", type=int, default=16, help="server's --batch: requests drawn at once")
    parser.add_argument("--max-words", type=int, default=4, help="server's longest reply before the picture")
    parser.add_argument("--threads", type=int, default=2, help="server's torch CPU threads")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per request (client and server)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mmgen-load-") as tmp:
        if args.tiny:
            checkpoints = make_tiny_checkpoints(Path(tmp))
        else:
            from mmgen.pipeline import DEFAULT_CHECKPOINTS
            checkpoints = args.checkpoints or DEFAULT_CHECKPOINTS
        port = free_port()
        command = [sys.executable, "-m", "mmgen.cli", "serve", "--checkpoints", str(checkpoints), "--port", str(port),
                   "--queue", str(max(args.requests, args.load) + 8), "--timeout", str(args.timeout),
                   "--threads", str(args.threads), "--batch", str(args.batch), "--max-words", str(args.max_words),
                   "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if k != "MMGEN_API_KEY"}
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            return run_load(server, port, args)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def wait_until_up(server: subprocess.Popen, port: int) -> bool:
    t0 = time.perf_counter()
    while True:
        if server.poll() is not None:
            print(f"the server exited ({server.returncode}) before answering:\n{server.stdout.read()}")
            return False
        try:
            if request(port, "GET", "/health", timeout=5)[0] == 200:
                print(f"server up in {time.perf_counter() - t0:.1f} s on 127.0.0.1:{port}")
                return True
        except OSError:
            pass
        if time.perf_counter() - t0 > 300:
            print("the server did not come up in 300 s")
            return False
        time.sleep(0.2)


class Round:
    """Requests sent one after another or at once: each one's latency, picture (or problem), the wall time."""

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout

    def one(self, i: int):
        body = {"prompt": PROMPTS[i % len(PROMPTS)].format(k=i % 4 + 1), "seed": 1000 + i}
        start = time.perf_counter()
        try:
            status, answer = request(self.port, "POST", "/v1/images/generations", body, self.timeout)
            problem = check_picture(status, answer)
        except Exception as e:      # noqa: BLE001 — a lost connection is a lost answer
            problem, answer = f"{type(e).__name__}: {e}", None
        # the pixels: each PNG carries a provenance id of its own
        picture = Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"]))).tobytes() \
            if problem is None else None
        return time.perf_counter() - start, picture, problem

    def run(self, count: int, at_once: bool) -> dict:
        start = time.perf_counter()
        if at_once:
            with ThreadPoolExecutor(count) as pool:
                results = list(pool.map(self.one, range(count)))
        else:
            results = [self.one(i) for i in range(count)]
        wall = time.perf_counter() - start
        return {"wall": wall, "latencies": [t for t, _, problem in results if problem is None],
                "pictures": [picture for _, picture, _ in results],
                "problems": [(i, problem) for i, (_, _, problem) in enumerate(results) if problem is not None]}


def latency(figures: dict, q: float) -> str:
    return f"{percentile(figures['latencies'], q):.2f} s" if figures["latencies"] else "-"


def run_load(server: subprocess.Popen, port: int, args) -> int:
    if not wait_until_up(server, port):
        return 1
    status, body = request(port, "POST", "/v1/images/generations", {"prompt": "warm-up", "seed": 0}, args.timeout)
    if check_picture(status, body):
        print(f"warm-up failed: {check_picture(status, body)}")
        return 1

    rounds = Round(port, args.timeout)
    counters = [batch_counters(port)]
    one_by_one = rounds.run(args.requests, at_once=False)
    counters.append(batch_counters(port))
    at_once = rounds.run(args.requests, at_once=True)
    counters.append(batch_counters(port))
    load = rounds.run(args.load, at_once=True)

    status, health = request(port, "GET", "/health", timeout=10)
    after, body = request(port, "POST", "/v1/images/generations", {"prompt": "still there?", "seed": 1}, args.timeout)
    healthy = (status == 200 and health.get("status") == "ok" and health.get("waiting") == 0
               and not check_picture(after, body))
    server.send_signal(signal.SIGINT)
    try:
        code = server.wait(60)
    except subprocess.TimeoutExpired:
        code = None

    n = args.requests
    same = sum(a is not None and a == b for a, b in zip(one_by_one["pictures"], at_once["pictures"]))
    ratio = one_by_one["wall"] / at_once["wall"]
    print(f"\n{n} requests (one picture each; server --batch {args.batch}, --threads {args.threads})")
    print(f"{'':16}{'one after another':>20}{'all at once':>20}")
    rows = {"answered": lambda r: f"{len(r['latencies'])}/{n}", "wall": lambda r: f"{r['wall']:.2f} s",
            "throughput": lambda r: f"{len(r['latencies']) / r['wall']:.2f} pictures/s",
            "latency p50": lambda r: latency(r, 50), "latency p95": lambda r: latency(r, 95)}
    for name, cell in rows.items():
        print(f"{name:16}{cell(one_by_one):>20}{cell(at_once):>20}")
    print(f"throughput ratio  {ratio:.2f}x (all at once / one after another)")
    costs = {name: picture_costs(a, b, n) for name, (a, b) in (("one by one", counters[0:2]),
                                                                 ("at once", counters[1:3]))}
    for name, c in costs.items():
        if c:
            print(f"{'passes, ' + name:20}{c['passes']} passes, {c['tokens']:.0f} tokens a picture, "
                  f"{c['pass']:.3f} s a picture in them ({c['ms_per_token']:.3f} ms a token); "
                  f"then decode {c['decode']:.3f} s, refine {c['refine']:.3f} s a picture")
    if costs["at once"]:
        # the passes at once run near the CPU's arithmetic peak, and decoding and refining do not
        # batch (their convolutions are already efficient one picture at a time): their sum is
        # about the least a picture can cost, and bounds the throughput ratio any scheduling reaches
        c = costs["at once"]
        floor = c["pass"] + c["decode"] + c["refine"]
        print(f"floor             {floor:.3f} s a picture of passes, decoding and refining at once: "
              f"at most {one_by_one['wall'] / n / floor:.2f}x the one-by-one throughput")
    print(f"same pictures     {same}/{n} drawn at once equal to the same request's drawn alone")
    print(f"\n{args.load} requests at once")
    print(f"answered    {len(load['latencies'])}/{args.load}, wall {load['wall']:.2f} s, "
          f"throughput {len(load['latencies']) / load['wall']:.2f} pictures/s")
    if load["latencies"]:
        print(f"latency     p50 {latency(load, 50)}   p95 {latency(load, 95)}   max {max(load['latencies']):.2f} s")
    print(f"\nbatching    {health.get('batch')}")
    print(f"after       /health status {health.get('status')}, waiting {health.get('waiting')}; another request "
          f"{'answered' if not check_picture(after, body) else 'FAILED'}")
    print(f"stop        SIGINT → exit {code if code is not None else 'none within 60 s'}")
    problems = [(name, i, problem) for name, r in (("one by one", one_by_one), ("at once", at_once), ("load", load))
                for i, problem in r["problems"]]
    for name, i, problem in problems[:10]:
        print(f"  {name} request {i}: {problem}")
    return 0 if not problems and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
