"""The parallel world source and the prefetching thread that `mmgen train lm --workers` uses."""
from __future__ import annotations

from itertools import islice

import pytest

from mmgen.data import CodeCache, prefetched, world_conversations, world_conversations_parallel
from mmgen.vq import VQTokenizer


@pytest.fixture(scope="module")
def tiny_vq(tiny_checkpoints):
    return VQTokenizer.from_pretrained(tiny_checkpoints / "vq")


def test_parallel_rendering_gives_the_same_conversations_in_order(tiny_vq):
    want = list(islice(world_conversations(CodeCache(tiny_vq.encode), start=7, step=3), 40))
    source = world_conversations_parallel(lambda x: tiny_vq.encode_tensor(x.float() / 255), workers=2,
                                          start=7, step=3, chunk=8)
    got = list(islice(source, 40))
    assert got == want


def test_chunks_of_told_scenes_alone_have_no_picture_and_still_stream(tiny_vq):
    """Told scenes carry no picture: a chunk of them alone renders nothing and encodes nothing."""
    mix = {"told_rate": 1.0}
    want = list(islice(world_conversations(CodeCache(tiny_vq.encode), mix=mix), 6))
    assert all(t.codes is None for c in want for t in c.turns)
    source = world_conversations_parallel(lambda x: tiny_vq.encode_tensor(x.float() / 255), workers=1,
                                          chunk=3, mix=mix)
    assert list(islice(source, 6)) == want


def test_prefetched_keeps_order_and_raises_where_the_source_failed():
    def source():
        yield from range(5)
        raise RuntimeError("broken source")

    items = prefetched(source(), depth=2)
    assert [next(items) for _ in range(5)] == list(range(5))
    with pytest.raises(RuntimeError, match="broken source"):
        next(items)


def test_prefetched_stops_its_thread_when_closed():
    import threading
    items = prefetched(iter(range(10 ** 9)), depth=2)
    assert next(items) == 0
    items.close()
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
