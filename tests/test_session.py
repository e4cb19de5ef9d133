"""The chat session's mechanics on a tiny random model: turns, streaming, undo/retry/fork,
save/load, provenance, transparency, moderation and bad input."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.imageutil import TRAINED_ALGORITHMIC_MEDIA
from mmgen.inputs import MAX_SEED, check_text, user_path
from mmgen.session import PREVIEW_MARGIN, ChatSession, SessionError, Settings, preview_image
from mmgen.settings import SamplingConfig
from mmgen.stream import IMAGE_TOKENS


def draw(chat, text="draw a red circle", **kw):
    return chat.send(text, picture="always", **kw)


def test_send_draws_and_keeps_exact_codes(tiny_model):
    chat = tiny_model.chat(seed=0)
    reply = draw(chat)
    assert isinstance(reply.image, Image.Image) and reply.image.size == (128, 128)
    assert len(reply.codes) == IMAGE_TOKENS and reply.id.startswith("img_")
    assert chat.conversation.turns[-1].codes == reply.codes          # the codes, not a re-encoding
    words = chat.send("what colour is it?", picture="never")
    assert words.image is None and isinstance(words.text, str)
    assert len(chat.history) == 4 and chat.history[1].image is not None


def test_seeded_sessions_are_reproducible(tiny_model):
    a, b = draw(tiny_model.chat(seed=5)), draw(tiny_model.chat(seed=5))
    assert a.codes == b.codes and a.text == b.text
    assert draw(tiny_model.chat(seed=6)).codes != a.codes


@pytest.mark.parametrize("bad", [-1, MAX_SEED + 1, 99999999999999999999, "7", 2.0, True])
def test_a_seed_outside_0_to_max_seed_is_refused_naming_the_range(tiny_model, bad):
    range_named = f"seed must be an integer from 0 to {MAX_SEED}"
    with pytest.raises(SessionError, match=range_named):
        tiny_model.chat(seed=bad)
    chat = tiny_model.chat(seed=0)
    with pytest.raises(SessionError, match=range_named):
        chat.seed = bad
    with pytest.raises(SessionError, match=range_named):
        chat.send("hello", seed=bad)
    with pytest.raises(SessionError, match=range_named):
        tiny_model.generate("a star", seed=bad)
    assert chat.seed == 0 and chat.conversation.turns == ()


def test_every_seed_a_reply_reports_can_be_given_back(tiny_model):
    chat = tiny_model.chat(seed=MAX_SEED, max_words=2)
    seeds = [chat.send("hello", picture="never").seed, chat.send("again", picture="never").seed,
             chat.retry(picture="never").seed]
    assert seeds[0] == MAX_SEED and all(0 <= s <= MAX_SEED for s in seeds)


def test_retry_moves_on_from_a_turn_seed_of_zero(tiny_model):
    chat = tiny_model.chat(seed=5, max_words=2)
    assert chat.send("hello", seed=0, picture="never").seed == 0
    assert chat.retry(picture="never").seed == 1                 # the turn's seed + 1, not the session's


def test_stream_previews_top_down_and_stopping_leaves_session_intact(tiny_model):
    chat = tiny_model.chat(seed=1)
    events = list(chat.stream("draw a star", picture="always"))
    previews = [e for e in events if e.kind == "preview"]
    assert [p.rows for p in previews] == list(range(1, 17))
    final = next(e for e in events if e.kind == "image").image
    assert previews[-1].image.tobytes() == final.tobytes()              # the last preview is the picture
    # rows not yet drawn are grey
    assert previews[3].image.getpixel((64, 127)) == (128, 128, 128)
    before = chat.conversation
    for e in chat.stream("make it blue", picture="always"):
        if e.kind == "preview" and e.rows == 4:
            break                                                     # the user pressed stop
    assert chat.conversation == before


def test_preview_image_decodes_the_drawn_rows_only(tiny_model):
    codes = draw(tiny_model.chat(seed=3)).codes
    vq = tiny_model.vq
    assert preview_image(vq, []).getextrema() == ((128, 128),) * 3          # nothing drawn: all grey
    assert preview_image(vq, codes).tobytes() == vq.decode(torch.tensor(codes).view(1, 16, 16))[0].tobytes()
    five = np.asarray(preview_image(vq, codes[:5 * 16 + 7]))                # 5 rows and part of a sixth
    assert five.shape == (128, 128, 3) and (five[40:] == 128).all()
    # the drawn rows decode with PREVIEW_MARGIN filler rows under them, not the whole grid
    calls = []
    real = vq.decode_tensor
    vq.decode_tensor = lambda ids, **kw: calls.append(ids.shape) or real(ids, **kw)
    try:
        preview_image(vq, codes[:32])
    finally:
        del vq.decode_tensor
    assert calls == [(1, 2 + PREVIEW_MARGIN, 16)]


def test_undo_retry_fork(tiny_model):
    chat = tiny_model.chat(seed=2)
    first = draw(chat)
    second = draw(chat, "make it blue")
    assert chat.undo() and chat.conversation.turns[-1].codes == first.codes
    again = chat.retry()
    assert len(chat.conversation.turns) == 2 and again.seed != first.seed
    fork = chat.fork()
    draw(fork, "add a star")
    assert len(fork.conversation.turns) == 4 and len(chat.conversation.turns) == 2
    assert chat.undo() and not chat.undo()
    with pytest.raises(SessionError):
        chat.retry()
    assert second.image is not None


def test_undo_asked_in_words_shows_the_picture_before_and_forgets_the_change(tiny_model):
    from mmgen.typed_undo import NOTHING_TO_UNDO, UNDONE, UNDONE_TO_NOTHING
    chat = tiny_model.chat(seed=4)
    nothing = chat.send("undo")
    assert (nothing.text, nothing.image, chat.conversation.turns) == (NOTHING_TO_UNDO, None, ())
    first = draw(chat)
    after_first = chat.conversation
    draw(chat, "make it blue")
    chat.send("what colour is it?", picture="never")              # said after the change: undone with it
    events = list(chat.stream("oops, put it back please"))
    assert [e.kind for e in events] == ["text", "image", "done"]
    reply = events[-1].reply
    assert reply.text == UNDONE and reply.codes == first.codes and reply.id == first.id
    assert reply.image.tobytes() == first.image.tobytes()              # as it was shown
    assert chat.conversation == after_first                          # the request itself is not kept
    assert chat.send("Undo that!").text == UNDONE_TO_NOTHING and chat.conversation.turns == ()
    stopped = chat.fork()
    draw(stopped)
    before = stopped.conversation
    next(stopped.stream("undo"))                                     # a stream stopped midway changes nothing
    assert stopped.conversation == before


def test_an_undo_in_words_goes_back_past_a_picture_the_user_gave(tiny_model):
    from mmgen.inputs import NotAQuestion
    from mmgen.typed_undo import UNDONE
    chat = tiny_model.chat(seed=5)
    first = draw(chat)
    after_first = chat.conversation
    given = Image.new("RGB", (128, 128), "white")
    chat.send("what is this?", image=given, picture="never")          # the user's picture is the latest
    assert chat.conversation.turns[-2].codes is not None
    reply = chat.send("go back")
    assert reply.text == UNDONE and reply.codes == first.codes and chat.conversation == after_first
    assert reply.prompt == "draw a red circle" and reply.id == first.id        # the picture's own provenance
    with pytest.raises(NotAQuestion, match="undo"):                   # ask() refuses it, changing nothing
        chat.ask("undo")
    assert chat.conversation == after_first


def test_undo_words_are_a_message_like_any_other_where_a_picture_must_be_drawn(tiny_model):
    """Only a chat reply the model may draw or not undoes: picture="always" or a batch of n draws, and
    "never" answers in words, both from the model."""
    chat = tiny_model.chat(seed=6)
    draw(chat)
    drawn = chat.send("undo", picture="always")
    assert drawn.image is not None and not drawn.undo and len(chat.conversation.turns) == 4
    assert not chat.send("undo", picture="never").undo and len(chat.conversation.turns) == 6
    assert not chat.send("undo", picture="always", n=2).undo


def test_save_load_round_trip_and_edit_the_same_picture(tiny_model, tmp_path):
    chat = tiny_model.chat(seed=3, cfg=2.0)
    reply = draw(chat)
    path = chat.save(tmp_path / "chat.json")
    loaded = ChatSession.load(path, tiny_model)
    assert loaded.conversation == chat.conversation and loaded.settings == chat.settings
    assert loaded.history[-1].image.tobytes() == reply.image.tobytes()
    assert draw(loaded, "make it blue", seed=9).codes == draw(chat, "make it blue", seed=9).codes


def test_a_session_saved_with_a_seed_out_of_range_names_its_file(tiny_model, tmp_path):
    """Before seeds had a range, --seed -1 was taken and saved: loading it says which file is at fault."""
    path = tiny_model.chat(seed=3).save(tmp_path / "old.json")
    path.write_text(path.read_text().replace('"seed": 3', '"seed": -1'))
    with pytest.raises(SessionError, match=f"^{re.escape(str(path))}: seed must be an integer from 0 to {MAX_SEED}"):
        ChatSession.load(path, tiny_model)


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b'{"format": "something else"}', b'{"format": "mmgen-session-1"}', b""])
def test_damaged_session_files_give_a_clear_error_and_are_untouched(tiny_model, tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(SessionError):
        ChatSession.load(path, tiny_model)
    assert path.read_bytes() == content
    with pytest.raises(SessionError, match="no session file"):
        ChatSession.load(tmp_path / "missing.json", tiny_model)


@pytest.mark.parametrize("turn, problem", [
    ("x", "a turn is str, not an object"),
    ({"role": "user", "text": "a\udcffb"}, "a turn's text is not UTF-8 text"),
    ({"role": "user", "text": 3}, "a turn's text must be text"),
    ({"role": "assistant", "text": "ok", "seed": "x"}, "seed must be an integer"),
    ({"role": "assistant", "text": "ok", "id": ["img_1"]}, "a turn's id is list, not text"),
    ({"role": "robot", "text": "ok"}, "role must be one of"),
])
def test_a_session_file_with_a_damaged_turn_is_refused_when_loaded(tiny_model, tmp_path, turn, problem):
    """Checked on /load, not when the next message trips over it."""
    path = tiny_model.chat(seed=3).save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    data["turns"] = [turn]
    path.write_text(json.dumps(data))
    with pytest.raises(SessionError, match=f"^{re.escape(str(path))} is damaged: .*{re.escape(problem)}"):
        ChatSession.load(path, tiny_model)


def test_a_saved_reply_longer_than_a_message_may_be_loads(tiny_model, tmp_path):
    """The message limit is for what a person sends; a reply is held to none when it is written."""
    path = tiny_model.chat(seed=3).save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    data["turns"] = [{"role": "user", "text": "describe it"}, {"role": "assistant", "text": "circle " * 1000}]
    path.write_text(json.dumps(data))
    assert ChatSession.load(path, tiny_model).conversation.turns[1].text == "circle " * 1000


def test_a_session_path_that_is_no_file_is_refused_without_reading_it(tiny_model, tmp_path):
    import signal
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)             # reading it would wait for a writer forever: an alarm fails the test instead
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the FIFO was opened for reading"))
    signal.alarm(20)
    try:
        with pytest.raises(SessionError, match="not a regular file"):
            ChatSession.load(fifo, tiny_model)
    finally:
        signal.alarm(0)
    with pytest.raises(SessionError, match="cannot contain a NUL"):
        ChatSession.load(str(tmp_path / "a\0b.json"), tiny_model)


def test_typed_paths_expand_a_home_folder_as_a_shell_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_path("~/s.json") == tmp_path / "s.json"
    assert user_path("~nosuchuser-mmgen/s.json") == Path("~nosuchuser-mmgen/s.json")   # no such user: as written
    assert user_path("~draft.png") == Path("~draft.png")
    with pytest.raises(SessionError, match="lone surrogate"):
        user_path("\ud800.json")
    with pytest.raises(SessionError, match="too long"):
        user_path("x" * 300 + ".json")


@pytest.mark.parametrize("side", [10_000, 14_000])     # PIL warns at 89 M pixels and refuses at 179 M
def test_a_picture_with_too_many_pixels_is_refused_in_one_line(tmp_path, side, recwarn):
    from mmgen.inputs import read_image
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)            # a few kB on disk
    with pytest.raises(SessionError, match="too many pixels to open safely"):
        read_image(path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_damaged_weights_file_is_named_not_a_traceback(tiny_checkpoints, tmp_path):
    import shutil

    import mmgen
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    weights = root / "lm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])      # cut short
    with pytest.raises(ValueError, match=f"a weights file under {re.escape(str(root))} is damaged or cut short"):
        mmgen.load(root)


def test_saved_pictures_carry_provenance(tiny_model, tmp_path):
    reply = draw(tiny_model.chat(seed=4))
    path = reply.save(tmp_path / "out.png")
    with Image.open(path) as im:
        assert im.info["mmgen:prompt"] == "draw a red circle" and im.info["mmgen:seed"] == str(reply.seed)
        assert TRAINED_ALGORITHMIC_MEDIA in im.info["XML:com.adobe.xmp"]
    plain = draw(tiny_model.chat(seed=4, provenance=False)).save(tmp_path / "plain.png")
    with Image.open(plain) as im:
        assert "mmgen:prompt" not in im.info and "XML:com.adobe.xmp" not in im.info


def test_batch_pictures_each_have_their_own_provenance_id(tiny_model, tmp_path):
    reply = draw(tiny_model.chat(seed=4), n=3)
    assert len(reply.ids) == 3 == len(set(reply.ids)) and reply.id == reply.ids[0]
    metas = []
    for i in range(3):
        with Image.open(reply.save(tmp_path / f"{i}.png", index=i)) as im:
            metas.append(im.info)
    assert [m["mmgen:id"] for m in metas] == reply.ids
    assert [m["mmgen:batch"] for m in metas] == ["1/3", "2/3", "3/3"]     # seed 4, n 3, this place draws it again
    assert {m["mmgen:seed"] for m in metas} == {"4"}
    with Image.open(draw(tiny_model.chat(seed=4)).save(tmp_path / "one.png")) as im:
        assert "mmgen:batch" not in im.info                                  # a single picture is no batch


def test_transparent_background(tiny_model):
    img = draw(tiny_model.chat(seed=4, background="transparent")).image
    assert img.mode == "RGBA"


def test_moderation_refuses_with_an_ordinary_reply(tiny_model):
    chat = tiny_model.chat(seed=0, moderation=lambda text, image: "I can't draw that." if "forbidden" in text else None)
    reply = chat.send("draw something forbidden")
    assert reply.refused and reply.text == "I can't draw that." and reply.image is None
    assert chat.conversation.turns == ()
    assert not draw(chat).refused


@pytest.mark.parametrize("bad", ["", "   ", "x" * 100_000, "bin\x00ary", 42, None, "draw a red circle \udcff"])
def test_bad_messages_are_refused_clearly_and_the_session_survives(tiny_model, bad):
    chat = tiny_model.chat(seed=0)
    with pytest.raises(SessionError):
        chat.send(bad)
    assert chat.conversation.turns == ()
    assert draw(chat).image is not None


def test_bad_pictures_and_settings(tiny_model, tmp_path):
    chat = tiny_model.chat(seed=0)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    for image in (junk, tmp_path / "missing.png", b"\x89PNG broken", 3.5):
        with pytest.raises(SessionError):
            chat.send("what is this?", image=image)
    with pytest.raises(SessionError):
        chat.send("draw", cfg=-1)
    with pytest.raises(SessionError):
        chat.send("draw", colour="red")
    with pytest.raises(SessionError):
        tiny_model.chat(temperature="hot")
    with pytest.raises(SessionError, match="word_temperature"):
        chat.send("draw", word_temperature=-0.5)
    assert tiny_model.chat(word_temperature=0.8).settings.sampling().word_temperature == 0.8
    assert chat.conversation.turns == ()
    # a greyscale picture of another size is converted and accepted
    reply = chat.send("what is this?", image=Image.new("L", (50, 70), 128), picture="never")
    assert chat.conversation.turns[0].codes is not None and reply.image is None


def test_one_settings_object_from_the_session_to_the_sampler(tiny_model):
    # one name and one default per knob: the sampler's view is the session's settings
    assert tiny_model.chat().settings.sampling() == SamplingConfig() == Settings().sampling()
    chat = tiny_model.chat(seed=0, picture="always", word_temperature=0.5, max_words=4)
    assert chat.settings.sampling() == SamplingConfig(picture="always", word_temperature=0.5, max_words=4)
    assert chat.send("draw a star").image is not None                                    # the session's picture
    assert chat.send("what is it?", picture="never").image is None                       # one call's
    chat.set(picture="never")
    assert chat.send("draw a star").image is None
    with pytest.raises(SessionError, match="picture must be one of"):
        chat.send("draw", picture="sometimes")


def test_text_that_is_not_utf8_is_refused_with_one_clear_sentence(tiny_model):
    chat = tiny_model.chat(seed=0)
    with pytest.raises(ValueError, match="not UTF-8") as e:          # SessionError is a ValueError
        chat.send("draw a red circle \udcff")
    assert isinstance(e.value, SessionError) and "TextInputSequence" not in str(e.value)
    with pytest.raises(SessionError) as same:
        check_text("\udcff", "the message")
    assert str(same.value) == str(e.value)                           # the sentence every way in gives
    assert chat.conversation.turns == ()


def test_one_shot_helpers(tiny_model):
    images = tiny_model.generate("two blue squares", n=2, seed=0)
    assert len(images) == 2 and all(im.size == (128, 128) for im in images)
    edited = tiny_model.edit(images[0], "make them red", seed=0)
    assert edited.size == (128, 128)
    from mmgen.inputs import NotAQuestion
    try:                  # a random model may take any message for a change (the shipped one: test_pipeline)
        assert isinstance(tiny_model.ask(images[0], "how many squares?", seed=0), str)
    except NotAQuestion as e:
        assert "for a change to make" in str(e)


def test_thirty_turns_past_the_context(tiny_model):
    chat = tiny_model.chat(seed=0, max_words=6)
    first = None
    for i in range(32):
        picture = "always" if i % 5 == 0 else "never"
        reply = chat.send(f"turn {i}: make the circle a little different", picture=picture)
        first = first or reply
        assert (reply.image is not None) == (picture == "always")
    # the tiny model's context (1024 ids) holds about three pictures: old turns left the prompt
    assert len(chat.conversation.turns) == 64
    assert len(tiny_model.stream.encode(chat.conversation).ids) > tiny_model.context
    assert chat.history[1].image.tobytes() == first.image.tobytes()      # but the session keeps them


@pytest.mark.parametrize("max_words", [None, 200])
def test_a_reply_as_long_as_the_cap_fits_after_a_prompt_that_fills_the_context(tiny_model, max_words):
    """The prompt is fitted with room for the longest reply the settings allow (its words, then a
    picture): a message that leaves just that room still gets its whole reply and picture. The
    random model writes words up to the cap before it opens a picture."""
    from mmgen.session import reply_reserve
    from mmgen.stream import Conversation, Turn
    settings = {} if max_words is None else {"max_words": max_words}
    chat = tiny_model.chat(seed=0, **settings)
    room = tiny_model.context - reply_reserve(chat.settings.max_words)
    prompt_length = lambda text: len(tiny_model.stream.encode(Conversation((Turn("user", text),)),  # noqa: E731
                                                              generation_prompt=True).ids)
    text, i = "draw", 0
    while prompt_length(f"{text} q{i}") <= room:
        text, i = f"{text} q{i}", i + 1
    assert prompt_length(text) > room - 4
    reply = chat.send(text, picture="always")
    assert reply.image is not None and len(reply.prompt_ids) == prompt_length(text)


def test_region_edit_keeps_codes_outside_the_mask(tiny_model):
    chat = tiny_model.chat(seed=7)
    first = draw(chat)
    grid = [[3 <= r < 8 and 2 <= c < 10 for c in range(16)] for r in range(16)]
    edited = chat.send("make the middle blue", mask=grid)
    region = [cell for row in grid for cell in row]
    assert all(a == b for a, b, m in zip(edited.codes, first.codes, region) if not m)
    # the same with an OpenAI-style mask picture: alpha 0 where it may change
    mask = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (16, 24, 80, 64))
    again = chat.send("and now green", mask=mask)
    assert all(a == b for a, b, m in zip(again.codes, edited.codes, region) if not m)
    with pytest.raises(SessionError):
        chat.send("x", mask=Image.new("RGB", (128, 128)))        # no alpha
    with pytest.raises(SessionError):
        chat.send("x", mask=[[False] * 16] * 16)                   # nothing to change
    with pytest.raises(SessionError):
        tiny_model.chat().send("x", mask=grid)                     # no picture to edit


def test_retry_stopped_midway_keeps_the_old_reply(tiny_model):
    chat = tiny_model.chat(seed=8)
    first = draw(chat)
    before = chat.conversation
    for e in chat.retry_stream(picture="always"):
        if e.kind == "preview" and e.rows == 3:
            break
    assert chat.conversation == before
    again = next(e.reply for e in chat.retry_stream(picture="always") if e.kind == "done")
    assert chat.conversation.turns[-1].codes == again.codes != first.codes


class InvertingRefiner:
    """Stands in for the diffusion refiner: an obvious, checkable change, with its calls recorded."""

    def __init__(self):
        self.seeds = []

    def refine(self, image, seed=None):
        from PIL import ImageOps
        self.seeds.append(seed)
        return ImageOps.invert(image)


def test_refine_setting_applies_the_refiner_to_drawn_pictures(tiny_model, monkeypatch, tmp_path):
    from PIL import ImageOps
    refiner = InvertingRefiner()
    monkeypatch.setattr(tiny_model, "refiner", refiner)
    chat = tiny_model.chat(seed=4)
    plain = draw(chat, refine=False)
    assert refiner.seeds == []
    chat.undo()
    refined = draw(chat)                                            # on by default
    assert refined.codes == plain.codes and refiner.seeds == [refined.seed]
    assert refined.image.tobytes() == ImageOps.invert(plain.image).tobytes()
    # the history and a reloaded session show the picture the reply showed
    shown = chat.history[1].image
    assert shown.tobytes() == refined.image.tobytes()
    shown.paste((1, 2, 3), (0, 0, 64, 64))                           # a caller drawing on its copy…
    assert chat.history[1].image.tobytes() == refined.image.tobytes()   # …changes nothing shown
    assert refiner.seeds == [refined.seed]                          # shown before: not refined again
    again = ChatSession.load(chat.save(tmp_path / "s.json"), tiny_model)
    assert again.last_image.tobytes() == refined.image.tobytes()
    # a picture the user gave is shown as it was encoded, never refined
    user = tiny_model.chat(seed=4)
    user.send("what is this?", image=plain.image, picture="never")
    refiner.seeds.clear()
    assert user.history[0].image is not None and refiner.seeds == []
    with pytest.raises(SessionError, match="refine"):
        tiny_model.chat(refine="yes")


def test_the_model_counts_the_picture_work_after_the_passes(tiny_model, monkeypatch):
    """Decoding and refining are timed on the model, over all its sessions (the server's /health)."""
    from dataclasses import replace as snapshot
    monkeypatch.setattr(tiny_model, "refiner", InvertingRefiner())
    before = snapshot(tiny_model.picture_work)
    draw(tiny_model.chat(seed=4), refine=False)
    draw(tiny_model.chat(seed=5))
    work = tiny_model.picture_work
    assert work.decoded - before.decoded == 2 and work.decode_seconds > before.decode_seconds
    assert work.refined - before.refined == 1 and work.refine_seconds > before.refine_seconds


def test_refiner_is_loaded_when_shipped(tiny_checkpoints, tmp_path):
    import shutil

    import mmgen
    from mmgen.refiner import PRESETS, Refiner
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    Refiner(PRESETS["tiny"]).save_pretrained(root / "refiner")
    model = mmgen.load(root)
    assert isinstance(model.refiner, Refiner)
    assert mmgen.load(tiny_checkpoints).refiner is None


def test_load_shows_no_progress_bar_and_leaves_transformers_as_it_was(tiny_checkpoints, capfd):
    import mmgen
    from transformers.utils import logging as hf_logging
    hf_logging.enable_progress_bar()                         # transformers' default, whatever ran before
    capfd.readouterr()
    mmgen.load(tiny_checkpoints)
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "|" not in err, err
    assert hf_logging.is_progress_bar_enabled()              # the caller's own setting, put back


def test_one_record_per_turn_with_its_seed_and_id(tiny_model, tmp_path):
    chat = tiny_model.chat(seed=2)
    reply = draw(chat)
    user, answer = chat.conversation.turns
    assert (user.role, user.seed, user.id) == ("user", None, None)
    assert (answer.codes, answer.seed, answer.id) == (reply.codes, reply.seed, reply.id)
    saved = chat.to_dict()["turns"]
    assert [(t["seed"], t["id"]) for t in saved] == [(None, None), (reply.seed, reply.id)]
    assert ChatSession.load(chat.save(tmp_path / "s.json"), tiny_model).conversation.turns == (user, answer)


def test_a_conversation_set_from_bare_turns_is_kept_as_records(tiny_model):
    from mmgen.stream import Conversation, Turn
    codes = draw(tiny_model.chat(seed=3)).codes
    chat = tiny_model.chat(seed=3)
    chat.conversation = Conversation((Turn("user", "draw a red circle"), Turn("assistant", "here", codes)))
    assert [h.seed for h in chat.history] == [None, None] and chat.history[1].image is not None
    edited = chat.send("make it blue", picture="always")
    assert edited.image is not None and chat.conversation.turns[-1].id == edited.id
    assert chat.retry().seed == edited.seed + 1


def test_the_pipeline_draws_what_the_session_shows(tiny_model):
    from mmgen.pipeline import Pipeline
    from mmgen.stream import Conversation, Turn
    reply = draw(tiny_model.chat(seed=5))                       # the first turn is drawn with the session's seed
    drawn = Pipeline(tiny_model)(Conversation((Turn("user", "draw a red circle"),)), Settings(picture="always"),
                                 seed=5)
    assert drawn.codes == [reply.codes] and drawn.text == reply.text
    assert drawn.images[0].tobytes() == reply.image.tobytes()


@pytest.mark.parametrize("text", ["undo", "Undo that please", "oops, put it back", "no, revert that!",
                                  "could you undo the last change?", "go back", "  UNDO  ", "please undo that, thanks"])
def test_requests_to_undo_are_recognised(text):
    from mmgen.typed_undo import is_undo_request
    assert is_undo_request(text)


@pytest.mark.parametrize("text", ["undo the red circle", "put it back on the left", "go back to the circle",
                                  "make it blue", "what does undo mean?", "", "put the circle back"])
def test_other_messages_are_not_requests_to_undo(text):
    from mmgen.typed_undo import is_undo_request
    assert not is_undo_request(text)
