"""`mmgen.load()` on the shipped checkpoints, from the repository, on CPU."""
from __future__ import annotations

import pytest

import mmgen
from mmgen.pipeline import DEFAULT_CHECKPOINTS
from mmgen.stream import IMAGE_TOKENS

pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINTS / "lm" / "model.safetensors").is_file(),
                                reason="no shipped transformer yet")


def test_load_draw_and_answer(shipped_model):
    assert shipped_model.device.type == "cpu"
    chat = shipped_model.chat(seed=0)
    reply = chat.send("draw a red circle at the top left", picture="always")
    assert reply.image.size == (128, 128) and len(reply.codes) == IMAGE_TOKENS
    answer = chat.send("what colour is the circle?", picture="never")
    assert answer.image is None and isinstance(answer.text, str)


def test_ask_answers_questions_and_refuses_changes(shipped_model):
    """ask() lets the model decide whether to draw, as a chat does: a question gets its answer in
    words; a change to make is stopped as the model begins to draw, and leaves the session as it was."""
    from mmgen.inputs import NotAQuestion
    from mmgen.world import render
    from mmgen.world.scene import Obj, Scene
    picture = render(Scene(objects=(Obj("circle", "red", "medium", "center"),)))
    assert shipped_model.ask(picture, "what colour is the circle?", seed=0).strip() == "red"
    chat = shipped_model.chat(seed=0)
    for change in ("make the circle blue", "remove the circle", "add a star at the top"):
        with pytest.raises(NotAQuestion, match="for a change to make"):
            chat.ask(change, image=picture)
        assert chat.conversation.turns == ()
    assert shipped_model.ask(picture, "how many circles are there?", seed=0).strip() == "one"


def test_mismatched_checkpoints_are_refused(tmp_path, tiny_checkpoints):
    import shutil
    shutil.copytree(DEFAULT_CHECKPOINTS / "lm", tmp_path / "lm")
    shutil.copytree(tiny_checkpoints / "vq", tmp_path / "vq")       # a different codebook size
    with pytest.raises(ValueError, match="do not belong together"):
        mmgen.load(tmp_path)


def test_multi_turn_session_script(shipped_model, tmp_path):
    """Issue 8's script on the shipped checkpoints: create → edit ×3 → ask → undo → save → load → edit.

    Checks the session's bookkeeping, not the drawing quality (that is `mmgen eval`'s job): every
    picture turn carries 256 codes, an edit is conditioned on the picture it edits, undo forgets
    exactly one exchange, and a reloaded session edits the very picture it showed."""
    from mmgen.session import ChatSession
    chat = shipped_model.chat(seed=3)
    first = chat.send("draw a red circle at the top left and a blue square at the bottom", picture="always")
    edits = [chat.send(text, picture="always") for text in
             ("make the circle green", "add a yellow star at the top right", "remove the square")]
    assert all(len(r.codes) == IMAGE_TOKENS for r in [first] + edits)
    assert [r.parent for r in edits] == [first.id, edits[0].id, edits[1].id]
    answer = chat.send("what colour is the circle?", picture="never")
    assert answer.image is None and answer.text
    assert len(chat.history) == 10
    assert chat.undo() and len(chat.history) == 8
    assert chat.conversation.turns[-1].codes == edits[-1].codes
    path = chat.save(tmp_path / "session.json")
    again = ChatSession.load(path, shipped_model)
    assert again.conversation == chat.conversation
    assert again.last_image.tobytes() == edits[-1].image.tobytes()
    last = again.send("make the star red", picture="always")
    assert last.parent == edits[-1].id and len(last.codes) == IMAGE_TOKENS
