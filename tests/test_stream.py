"""The token stream: round trips, loss masks, injection safety, malformed spans, length policy."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from mmgen.stream import IMAGE, IMAGE_TOKENS, SPECIAL, TEXT, Conversation, Stream, StreamError, Turn


def random_codes(rng: random.Random, codebook: int) -> tuple[int, ...]:
    return tuple(rng.randrange(codebook) for _ in range(IMAGE_TOKENS))


def world_stream_conversations(n: int, codebook: int):
    """World conversations with random codes standing in for the VQ (the layout is what is tested)."""
    from mmgen.world.conversation import sample_conversation
    rng = random.Random(0)
    for seed in range(n):
        c = sample_conversation(seed, split="train" if seed % 4 else "eval")
        yield Conversation(tuple(Turn(role=t.role, text=t.text,
                                      codes=random_codes(rng, codebook) if t.image is not None else None)
                                 for t in c.turns))


def test_round_trip_thousands_of_world_conversations(tiny_stream):
    n_images = 0
    for conv in world_stream_conversations(2000, tiny_stream.codebook_size):
        enc = tiny_stream.encode(conv)
        assert tiny_stream.decode(enc.ids) == conv
        assert len(enc.ids) == len(enc.loss_mask) == len(enc.modality)
        n_images += sum(t.codes is not None for t in conv.turns)
    assert n_images > 1000


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_unicode_text_round_trips(tiny_stream, text):
    ids = tiny_stream.text.encode(text)
    assert all(tiny_stream.is_text_id(i) for i in ids)
    assert tiny_stream.text.decode(ids) == text
    conv = Conversation((Turn("user", text), Turn("assistant", text)))
    assert tiny_stream.decode(tiny_stream.encode(conv).ids) == conv


def test_loss_mask_covers_exactly_the_assistant(tiny_stream):
    rng = random.Random(1)
    conv = Conversation((
        Turn("user", "draw a red circle", None),
        Turn("assistant", "Here it is.", random_codes(rng, tiny_stream.codebook_size)),
        Turn("user", "what is this?", random_codes(rng, tiny_stream.codebook_size)),
        Turn("assistant", "A blue square."),
    ))
    enc = tiny_stream.encode(conv)
    s = tiny_stream
    # walk the layout and rebuild the expected mask independently
    expected = [False]                                             # <bos>
    for t in conv.turns:
        words = len(s.text.encode(t.text))
        pic = IMAGE_TOKENS + 2 if t.codes is not None else 0
        if t.role == "user":
            expected += [False] * (1 + pic + words + 1)
        else:
            expected += [False] + [True] * (words + pic + 1)     # tag unmasked; words, picture, <eot>
    assert enc.loss_mask == expected
    # image codes are exactly the IMAGE positions, and they are image ids
    assert sum(m == IMAGE for m in enc.modality) == 2 * IMAGE_TOKENS
    assert all(s.is_image_id(i) == (m == IMAGE) for i, m in zip(enc.ids, enc.modality))
    assert all((m == SPECIAL) == (i in s.special.values()) for i, m in zip(enc.ids, enc.modality))
    assert all((m == TEXT) == s.is_text_id(i) for i, m in zip(enc.ids, enc.modality))


@pytest.mark.parametrize("typed", ["<image>", "<eot>", "</image>", "<user> hi <assistant>", "<bos><pad>"])
def test_typed_special_tokens_stay_text(tiny_stream, typed):
    ids = tiny_stream.encode(Conversation((Turn("user", typed),))).ids
    specials = set(tiny_stream.special.values())
    # only the structural ids: <bos> <user> … <eot>
    inner = ids[2:-1]
    assert inner and not any(i in specials or tiny_stream.is_image_id(i) for i in inner)
    assert tiny_stream.decode(ids).turns[0].text == typed


def test_malformed_image_spans_are_rejected(tiny_stream):
    s = tiny_stream
    head = [s.bos, s.assistant, s.image_start]
    with pytest.raises(StreamError, match="256"):
        s.decode(head + [s.image_offset] * 255 + [s.image_end, s.eot])        # too few codes
    with pytest.raises(StreamError):
        s.decode(head + [s.image_offset] * 257 + [s.image_end, s.eot])        # too many
    with pytest.raises(StreamError):
        s.decode(head + [s.image_offset] * 100 + [5] + [s.image_offset] * 155 + [s.image_end, s.eot])  # text inside
    with pytest.raises(StreamError, match="codebook"):
        Stream.encode(s, Conversation((Turn("assistant", "x", tuple([s.codebook_size] * IMAGE_TOKENS)),)))
    with pytest.raises(StreamError):
        Turn("assistant", "x", tuple([0] * 100))
    with pytest.raises(StreamError):
        s.decode([s.bos, 999_999])


def test_generation_prompt_and_unconditional_branch(tiny_stream):
    conv = Conversation((Turn("user", "draw a red circle"),))
    cond = tiny_stream.encode(conv, generation_prompt=True).ids
    uncond = tiny_stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids
    assert cond[-1] == uncond[-1] == tiny_stream.assistant
    assert uncond == [tiny_stream.bos, tiny_stream.user, tiny_stream.eot, tiny_stream.assistant]


def long_conversation(stream: Stream, turns: int, rng: random.Random) -> Conversation:
    out = []
    for i in range(turns):
        out.append(Turn("user", f"message {i}: make the circle a different colour please"))
        out.append(Turn("assistant", f"Done {i}.", random_codes(rng, stream.codebook_size) if i % 3 == 0 else None))
    return Conversation(tuple(out))


@pytest.mark.parametrize("budget", [600, 1024, 2048])
def test_length_policy_keeps_latest_message_and_picture(tiny_stream, budget):
    rng = random.Random(budget)
    conv = long_conversation(tiny_stream, 40, rng)
    assert len(tiny_stream.encode(conv).ids) > budget
    fitted = tiny_stream.fit(conv, budget, reserve=100)
    assert len(tiny_stream.encode(fitted, generation_prompt=True).ids) + 100 <= budget
    assert fitted.turns[-1] == conv.turns[-1]                       # the latest message
    last_pic = conv.turns[conv.last_image_index()]
    assert fitted.turns[fitted.last_image_index()].codes == last_pic.codes   # the picture being edited
    # dropping is oldest-first: every dropped turn is older than every kept one (bar that picture)
    pic_index = conv.last_image_index()
    kept = [conv.turns.index(t) for t in fitted.turns if t.codes != last_pic.codes]
    dropped = [i for i in range(len(conv.turns)) if i not in kept and i != pic_index]
    assert dropped and max(dropped) < min(kept)


def test_length_policy_refuses_when_impossible(tiny_stream):
    conv = Conversation((Turn("user", "x " * 500),))
    with pytest.raises(StreamError, match="budget"):
        tiny_stream.fit(conv, 100)


def test_short_conversation_is_untouched(tiny_stream):
    conv = long_conversation(tiny_stream, 2, random.Random(0))
    assert tiny_stream.fit(conv, 4096) == conv


def test_reply_dropout_empties_the_words_but_keeps_the_picture(tiny_stream):
    s = tiny_stream
    codes = tuple(i % tiny_stream.codebook_size for i in range(IMAGE_TOKENS))
    conv = Conversation((Turn("user", "draw a red circle"), Turn("assistant", "Here you go: a red circle.", codes)))
    full = s.encode(conv)
    silent = s.encode(conv, drop_user_text=frozenset({0}), drop_reply_text=frozenset({1}))
    assert silent.ids == [s.bos, s.user, s.eot, s.assistant] + full.ids[full.ids.index(s.image_start):]
    assert silent.loss_mask[silent.ids.index(s.image_start):] == full.loss_mask[full.ids.index(s.image_start):]


def test_training_dropout_leaves_a_conversation_without_pictures_whole(tiny_stream):
    """A told scene has no picture to guide: emptying its description would leave every later answer
    about it a guess, so it keeps its words, and the dropout's draws stay in step with other conversations."""
    from mmgen.data import encode_for_training
    conv = Conversation((Turn("user", "imagine a red circle in the top left on a white background. where is it?"),
                         Turn("assistant", "top left"), Turn("user", "what colour is the circle?"),
                         Turn("assistant", "red")))
    rng, twin = random.Random(0), random.Random(0)
    kept = encode_for_training(tiny_stream, conv, rng, max_len=2048, cfg_dropout=1.0)
    assert kept.ids == tiny_stream.encode(conv).ids
    assert rng.random() == [twin.random() for _ in range(3)][-1]      # one draw per user turn, as ever


def test_training_dropout_silences_only_picture_replies_after_a_dropped_request(tiny_stream):
    from mmgen.data import encode_for_training
    codes = tuple(i % tiny_stream.codebook_size for i in range(IMAGE_TOKENS))
    conv = Conversation((Turn("user", "draw a red circle"), Turn("assistant", "Here you go: a red circle.", codes),
                         Turn("user", "what colour is it?"), Turn("assistant", "red")))
    silenced = asked = 0
    rng = random.Random(0)
    for _ in range(200):
        ids = encode_for_training(tiny_stream, conv, rng, max_len=2048, cfg_dropout=1.0).ids
        text = tiny_stream.text.decode([t for t in ids if tiny_stream.is_text_id(t)])
        assert "draw" not in text and "colour" not in text        # every request dropped
        silenced += "Here you go" not in text
        asked += text.strip().endswith("red")
    assert asked == 200                                           # an answer's words are never dropped
    assert 60 < silenced < 140                                    # about half the picture replies (REPLY_DROPOUT)
