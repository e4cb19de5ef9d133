"""Continuous batching (batching.py, shared_cache.py, server_worker.Worker): requests drawn together
give what each gives alone — its own seed, settings and speculation — and they really are drawn
together (the batch's counters, never a time)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from mmgen.batching import Batch
from mmgen.engine import Engine
from mmgen.generate import generate_ids, left_pad
from mmgen.settings import SamplingConfig
from mmgen.shared_cache import Feed, RowCache
from mmgen.speculative import CopyDrafter
from mmgen.stream import Conversation, Turn

DEFAULTS = {"max_words": 3}


@pytest.fixture(scope="module")
def drawing_model(tiny_checkpoints):
    """The tiny random model with a decoder that draws what the codes say (at initialisation its last
    layer is zero and every picture flat grey), so equal pictures mean equal codes."""
    import mmgen
    model = mmgen.load(tiny_checkpoints, dtype=torch.float32)
    with torch.no_grad():
        model.vq.decoder.net[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    return model


def prompt_rows(stream, seed: int, length: int) -> list[int]:
    """A prompt with words, an open picture and some codes: image embeddings count here."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(0, stream.text_vocab, (length,), generator=g).tolist()
    codes = (stream.image_offset + torch.randint(0, stream.codebook_size, (20,), generator=g)).tolist()
    return [stream.bos, *words, stream.image_start, *codes]


def test_shared_cache_rows_each_at_their_own_length_match_the_engine(tiny_lm, tiny_stream):
    """Two requests of different lengths in one cache, fed different numbers of tokens per pass and
    rolled back on their own: each gets the logits its own engine gives, to rounding."""
    s, codes = tiny_stream, (tiny_stream.image_offset, tiny_stream.vocab_size)
    shared = RowCache(Engine(tiny_lm, batch=1), rows=6, filler=s.pad)
    alone = {}
    for name, rows, where in (("a", [prompt_rows(s, 0, 10), prompt_rows(s, 1, 14)], [4, 1]),
                              ("b", [prompt_rows(s, 2, 25)], [2])):
        ids, mask, _ = left_pad(rows, s.pad)
        engine = Engine(tiny_lm, batch=len(rows))
        engine.prefill(ids, (1 - mask).sum(-1))
        shared.load(where, engine, ids, (1 - mask).sum(-1))
        alone[name] = (engine, where)
    g = torch.Generator().manual_seed(3)
    for ta, tb in ((3, 1), (1, 5), (2, 2), (1, 1)):
        new_a = torch.randint(*codes, (2, ta), generator=g)
        new_b = torch.randint(*codes, (1, tb), generator=g)
        out_a, out_b = shared.step([Feed(rows=[4, 1], ids=new_a, vocab=codes), Feed(rows=[2], ids=new_b)])
        torch.testing.assert_close(out_a, alone["a"][0].step(new_a, codes), rtol=0, atol=1e-5)
        torch.testing.assert_close(out_b, alone["b"][0].step(new_b), rtol=0, atol=1e-5)
        alone["a"][0].length -= 1                       # request a rejects a draft, b does not
        shared.lengths[[4, 1]] -= 1
    assert shared.lengths.tolist() == [0, alone["a"][0].length, alone["b"][0].length, 0, alone["a"][0].length, 0]


def test_one_request_alone_in_the_shared_cache_is_the_engine_exactly(tiny_lm, tiny_stream):
    s = tiny_stream
    conv = Conversation((Turn("user", "draw a red circle under a sign that says OPEN"),))
    cond, uncond = (s.encode(conv, generation_prompt=True, drop_last_user_text=d).ids for d in (False, True))
    batch = Batch(tiny_lm, rows=8, filler=s.pad)
    for n, drafter, word_cfg in ((1, None, 1.0), (2, None, 1.0), (2, CopyDrafter, 1.0), (2, CopyDrafter, 3.0)):
        config = SamplingConfig(max_words=4, picture="always", word_cfg=word_cfg)     # 3: the words' twin has a lane

        def draw(**kw):
            return [step.tokens for step in generate_ids(tiny_lm, s, cond, uncond, config=config, n=n, seed=5,
                                                         drafter=drafter() if drafter else None, **kw)]
        assert draw(decoders=batch.lanes()) == draw()
        assert batch.free_rows == list(range(8)) and not batch.waiting        # every row given back


def test_prompts_take_free_rows_first_come_first_served(tiny_lm, tiny_stream):
    """A prompt that needs more rows than are free waits, and the prompts after it wait behind it."""
    s = tiny_stream
    batch = Batch(tiny_lm, rows=4, filler=s.pad)

    def asking(rows: int):           # a request's lane that has asked for its prefill
        lane = batch.lanes(wait=lambda: None)(tiny_lm, rows)
        ids, mask, _ = left_pad([prompt_rows(s, rows, 5)] * rows, s.pad)
        lane.ask = ("prefill", ids, (1 - mask).sum(-1), None)
        batch.waiting.append(lane)
        return lane

    small, big, later = asking(1), asking(4), asking(1)
    batch.run()
    assert small.rows == [0] and big.rows is None and later.rows is None
    batch.free(small)
    batch.run()
    assert big.rows == [0, 1, 2, 3] and later.rows is None and batch.waiting == [later]
    batch.free(big)
    batch.run()
    assert later.rows == [0] and not batch.waiting


def test_a_branch_takes_its_words_row_or_waits_holding_no_row(tiny_lm, tiny_stream):
    """A request's picture rows branch from its words' row, which becomes their first; short of
    rows, the branch gives that row back and waits as a prompt (a request holding a row while it
    waits for another's would deadlock a full batch)."""
    s = tiny_stream
    batch = Batch(tiny_lm, rows=4, filler=s.pad)
    make = batch.lanes(wait=lambda: None)

    def asking(lane, ask):
        lane.ask = ask
        batch.waiting.append(lane)
        batch.run()
        return lane

    def words(seed):
        ids, mask, _ = left_pad([prompt_rows(s, seed, 5)], s.pad)
        return asking(make(tiny_lm, 1), ("prefill", ids, (1 - mask).sum(-1), None))

    held = prompt_rows(s, 0, 5)
    twin = held[:3] + [7, 8]
    first = words(0)
    pictures = asking(make(tiny_lm, 4), ("branch", first, held, 2, twin))
    assert pictures.rows[0] == 0 and first.rows is None and batch.stats.branches == 1 and not batch.free_rows
    batch.free(pictures)
    crowd, second = words(1), words(2)                   # another request holds row 0; this one row 1
    waiting = asking(make(tiny_lm, 4), ("branch", second, held, 2, twin))
    assert second.rows is None and waiting.ask[0] == "prefill" and waiting.rows is None
    assert batch.free_rows == [1, 2, 3] and batch.waiting == [waiting]
    batch.free(crowd)
    batch.run()
    assert waiting.rows == [0, 1, 2, 3] and not batch.waiting and batch.stats.branches == 1


def test_health_reports_the_batch_counters():
    from mmgen.batching import BatchStats
    from mmgen.server_routes import batch_figures
    stats = BatchStats(passes=4, prefills=3, branches=2, largest=3, lanes_fed=10, tokens=90, pass_seconds=0.12345)
    assert batch_figures(stats) == {"passes": 4, "largest": 3, "mean": 2.5, "prefills": 3, "branches": 2,
                                    "tokens": 90, "pass_seconds": 0.123}
    from mmgen.pipeline import PictureWork
    from mmgen.server_routes import picture_figures
    assert picture_figures(PictureWork(decoded=3, decode_seconds=0.0301, refined=2, refine_seconds=0.0824)) == \
        {"decoded": 3, "decode_seconds": 0.03, "refined": 2, "refine_seconds": 0.082}


def drawn_alone_and_together(model, requests, max_active):
    """Each request's reply (words, pictures) drawn alone (no batch), then all submitted to one
    Worker before it starts, so its first rounds hold them together; the batch's counters after."""
    from mmgen.server_worker import Worker

    def turn(prompt, seed, n, overrides, decoders=None):
        chat = model.chat(seed=seed, **DEFAULTS)
        for event in chat.stream(prompt, n=n, picture="always", previews=False, decoders=decoders, **overrides):
            if event.kind == "done":
                yield [event.reply.text] + [im.tobytes() for im in event.reply.images]

    alone = [next(turn(*r)) for r in requests]

    async def together():
        batch = Batch(model.lm, rows=16, filler=model.stream.pad)
        worker = Worker(max_queue=len(requests), batch=batch, max_active=max_active)
        jobs = [worker.submit(lambda lanes, r=r: turn(*r, decoders=lanes), batched=True) for r in requests]
        worker.start()
        loop = asyncio.get_running_loop()
        results = [await job.result(loop.time() + 300, 300) for job in jobs]
        await asyncio.to_thread(worker.close)
        return results, batch

    together_, batch = asyncio.run(together())
    return alone, together_, batch


def test_requests_drawn_together_give_what_each_gives_alone(drawing_model):
    requests = [("draw a red circle", 1, 1, {}),
                ("three blue squares at the top", 2, 2, {}),                  # n = 2: four rows
                ("a green star", 3, 1, {"speculative": "copy"}),              # its own speculation
                ("a yellow triangle on black", 4, 1, {"temperature": 0.9, "cfg": 3.0}),
                ("draw a red circle", 5, 1, {"speculative": "off"})]          # same prompt, another seed
    alone, together, batch = drawn_alone_and_together(drawing_model, requests, max_active=8)
    assert [len(a) - 1 for a in alone] == [n for _, _, n, _ in requests]
    assert together == alone
    assert batch.stats.largest == len(requests)                   # all five in one pass
    assert batch.stats.sizes.get(len(requests), 0) > 100          # ... for most of the picture
    assert batch.free_rows == list(range(16)) and not batch.waiting


def test_a_finished_request_frees_its_rows_for_a_waiting_one(drawing_model):
    """Three requests, room for two at a time: the third joins when one ends (continuous batching)."""
    requests = [("a red circle", 11, 1, {}), ("a blue square", 12, 1, {"max_words": 1}),
                ("a green star", 13, 1, {})]
    alone, together, batch = drawn_alone_and_together(drawing_model, requests, max_active=2)
    assert together == alone
    # each conversation once, and its words' twin (word_cfg: guided first plans)
    assert batch.stats.largest == 2 and batch.stats.prefills == 2 * len(requests)
    assert batch.stats.branches == len(requests)                                  # its pictures from its words


def test_a_request_stopped_midway_frees_its_rows_and_leaves_the_others_unchanged(drawing_model):
    from mmgen.server_worker import Worker

    def turn(prompt, seed, decoders=None):
        chat = drawing_model.chat(seed=seed, **DEFAULTS)
        for event in chat.stream(prompt, picture="always", decoders=decoders):      # previews: many items
            yield [event.reply.text, event.reply.image.tobytes()] if event.kind == "done" else event.kind

    requests = [("a red circle", 21), ("a blue square", 22), ("a green star", 23)]
    alone = [list(turn(*r))[-1] for r in requests]

    async def scenario():
        batch = Batch(drawing_model.lm, rows=8, filler=drawing_model.stream.pad)
        worker = Worker(max_queue=4, batch=batch)
        jobs = [worker.submit(lambda lanes, r=r: turn(*r, decoders=lanes), batched=True) for r in requests]
        worker.start()
        loop = asyncio.get_running_loop()
        events = jobs[1].events(loop.time() + 300, 300)
        async for item in events:
            if item == "preview":
                break
        await events.aclose()                           # the client leaves mid-picture: the job is cancelled
        kept = [await jobs[i].result(loop.time() + 300, 300) for i in (0, 2)]
        for _ in range(200):                            # the stopped one ends at its next turn
            if worker.served == 3:
                break
            await asyncio.sleep(0.05)
        served, free = worker.served, list(batch.free_rows)
        await asyncio.to_thread(worker.close)
        return kept, served, free, batch

    kept, served, free, batch = asyncio.run(scenario())
    assert kept == [alone[0], alone[2]]
    assert served == 3 and free == list(range(8)) and not batch.waiting
    assert batch.stats.largest == 3


def test_server_batches_concurrent_generations_exactly(drawing_model):
    """Concurrent /v1/images/generations calls (distinct prompts, seeds, n) through a real server:
    each picture equals the one the same request gets alone, and passes were shared."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from mmgen.server import ServerConfig
    from test_server import picture, serve

    config = ServerConfig(max_queue=16, timeout=300, session_defaults=DEFAULTS)
    calls = [{"prompt": f"draw {i} red circles at the {side}", "n": 1 + i % 2, "extra_body": {"seed": 100 + i}}
             for i, side in enumerate(["top", "left", "bottom", "right", "center", "top left"])]
    with serve(drawing_model, config) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0, timeout=300)

        def draw(call):
            return [picture(d.b64_json).tobytes() for d in client.images.generate(**call).data]

        start = threading.Barrier(len(calls))

        def at_once(call):
            start.wait()
            return draw(call)

        with ThreadPoolExecutor(len(calls)) as pool:
            together = list(pool.map(at_once, calls))
        stats = app.state.worker.batch.stats
        largest = stats.largest
        alone = [draw(call) for call in calls]
    assert [len(p) for p in together] == [call["n"] for call in calls]
    assert together == alone
    assert largest >= 2, stats


def test_a_guided_replys_twin_is_not_queued_behind_a_prompt_waiting_for_rows(tiny_lm, tiny_stream):
    """A request holding its words' row asks for its twin's (word_cfg) while a prompt that needs
    every row waits: the twin is served, else the words' row would never come back and the prompt
    ahead would wait for it forever."""
    s = tiny_stream
    batch = Batch(tiny_lm, rows=4, filler=s.pad)
    ids = torch.tensor([[s.bos, 5, 6, 7]])
    first, second = batch.lanes(), batch.lanes()
    words = first(tiny_lm, 1)
    words.start(ids, torch.ones_like(ids))                 # served at once: one row held
    big, twin = second(tiny_lm, 4), first(tiny_lm, 1)
    for lane, rows in ((big, 4), (twin, 1)):               # both waiting, the big prompt first
        lane.ask = ("prefill", ids.expand(rows, -1), torch.zeros(rows, dtype=torch.long), None)
        batch.waiting.append(lane)
    batch.run()
    assert big.answer is None and twin.answer is not None and len(twin.rows) == 1
