"""Words a model was never taught: found, explained (a slip of the keyboard, a sign's word), stored
with the checkpoint, carried by replies; and the shipped list covers every phrasing the world uses."""
from __future__ import annotations

import random

import pytest

from mmgen.pipeline import DEFAULT_CHECKPOINTS
from mmgen.unknown_words import (load_vocabulary, message_words, nearest_taught, note, one_slip_apart,
                                 unknown_words, write_vocabulary)

TAUGHT = frozenset("draw a the circle square triangle yellow below red blue make it and says sign that".split())


def test_message_words_leave_out_a_signs_word():
    assert message_words('Draw a sign that says "HELLO" and a CAT, then OPEN it') == \
        ["draw", "a", "sign", "that", "says", "and", "a", "then", "it"]
    assert message_words("I'd like a red circle :)") == ["i'd", "like", "a", "red", "circle"]
    # no word is made up of a token stuck to digits, a smiley's letter or a lone letter
    assert message_words("café in the 2nd row, 3x bigger :D x") == ["café", "in", "the", "row", "bigger"]


@pytest.mark.parametrize("typed, taught, slip", [
    ("circe", "circle", True),          # a letter dropped
    ("circlle", "circle", True),        # doubled
    ("cirlce", "circle", True),         # two neighbours swapped
    ("cirxle", "circle", True),         # a neighbouring key (x is next to c)
    ("cirple", "circle", False),        # a key far from the one meant
    ("circlue", "circle", False),       # a letter added that doubles nothing
    ("circle", "circle", False),        # no slip at all
    ("crlce", "circle", False),         # two slips
])
def test_one_slip_apart(typed, taught, slip):
    assert one_slip_apart(typed, taught) is slip


def test_a_slip_is_traced_to_the_taught_word_it_mistypes():
    assert nearest_taught("yelow", TAUGHT) == "yellow"       # not "below", one slip away too
    assert nearest_taught("squre", TAUGHT) == "square"
    assert nearest_taught("cat", TAUGHT) is None             # too short to guess from
    assert nearest_taught("hexagon", TAUGHT) is None
    assert nearest_taught("circles", TAUGHT | {"circle's"}) is None      # never a possessive
    assert nearest_taught("cirxle's", TAUGHT) == "circle's"               # but a possessive's word


def test_the_note_names_unknown_words_asks_about_slips_and_explains_signs():
    assert unknown_words("draw a cat and a cat and a dog", TAUGHT) == ["cat", "dog"]
    assert unknown_words("make the circle's edge red", TAUGHT) == ["edge"]      # a taught word's possessive
    assert note("draw a red circle", TAUGHT) == ""
    assert note("draw a cat", None) == ""                    # a checkpoint without a list: no notes
    assert note("draw a cat", TAUGHT) == 'I don\'t know the word "cat".'
    assert note("draw a cat, a dog and a yelow squre", TAUGHT) == \
        'I don\'t know the words "cat" and "dog". Did you mean "yellow" for "yelow" and "square" for "squre"?'
    assert note("make a sign that says hello", TAUGHT) == 'A sign\'s word goes in capitals: "HELLO".'
    # capitals side by side are not one sign's word: said, with the lower-case spelling where they name
    # shapes or colours, and that a sign holds one word after a sign's lead-in or in quotes
    assert note("Draw A RED CIRCLE!!!", TAUGHT) == ('Words in capitals go on a sign, and a sign holds one word: '
                                                     '"RED CIRCLE" may be read as a sign\'s word. Shapes and colours '
                                                     'go in lower case ("red circle").')
    assert "TWO BOXES" in note("draw TWO BOXES", TAUGHT) and "STOP" not in note('says STOP\nDRAW A CIRCLE', TAUGHT)
    one_word = 'A sign holds one word, so only part of "{}" may be drawn.'
    assert note("a sign that says HI THERE", TAUGHT) == note('a sign that says "HI THERE"', TAUGHT) == \
        one_word.format("HI THERE")
    assert note("draw a red circle OK THANKS", TAUGHT) == note("a sign that says HELLO", TAUGHT) == ""
    assert note('make a sign that says "HELLO"', TAUGHT) == ""
    # what no sign can hold gets no capitals hint: too long, or not letters A-Z
    assert note("make a sign that says helloooooooo", TAUGHT) == 'I don\'t know the word "helloooooooo".'
    assert note("make a sign that says café", TAUGHT) == 'I don\'t know the word "café".'
    many = note("draw ab cd ef gh ij kl mn op", TAUGHT)
    assert many == 'I don\'t know the words "ab", "cd", "ef", "gh", "ij", "kl" and 2 more.'


def test_the_list_is_stored_and_a_damaged_one_is_refused(tmp_path):
    assert load_vocabulary(tmp_path) is None
    write_vocabulary(tmp_path, {"b", "a"})
    assert load_vocabulary(tmp_path) == {"a", "b"}
    for junk in ("{not json", '{"words": "a b"}', '{"other": []}', "[1, 2]", '{"words": [1]}'):
        (tmp_path / "vocabulary.json").write_text(junk)
        with pytest.raises(ValueError, match="is not a vocabulary list"):
            load_vocabulary(tmp_path)


def test_a_reply_carries_the_note(tiny_model):
    chat = tiny_model.chat(seed=0)
    before, tiny_model.vocabulary = tiny_model.vocabulary, TAUGHT
    try:
        reply = chat.send("draw a cat", picture="never")
        assert reply.note == 'I don\'t know the word "cat".'
        assert chat.send("draw a red circle", picture="never").note == ""
    finally:
        tiny_model.vocabulary = before
    before, tiny_model.vocabulary = tiny_model.vocabulary, None
    try:
        assert chat.send("draw a cat", picture="never").note == ""      # no list, no note
    finally:
        tiny_model.vocabulary = before


def test_the_shipped_list_knows_every_phrasing_of_the_world():
    """The world's contract (WORLD.md): held-out phrasings use only taught words, so no message of
    the shipped model's last training mix, nor of the evaluation splits (held-out phrasings
    included), gets a note. Nor does a typing slip of a taught word go unexplained when it is long
    enough to guess from."""
    import json
    from mmgen.eval.vocabulary import mix_of
    from mmgen.world.conversation import sample_conversation
    from mmgen.world.typos import misspell
    taught = load_vocabulary(DEFAULT_CHECKPOINTS / "lm")
    assert taught is not None and len(taught) > 300
    runs = json.loads((DEFAULT_CHECKPOINTS / "lm" / "config.json").read_text())["mmgen_training"]["runs"]
    mixes = [("train", dict(mix_of(runs[-1]))), ("eval", {}), ("paraphrase", {})]
    messages = [t.text for split, mix in mixes for seed in range(300)
                for t in sample_conversation(seed, split, **mix).turns if t.role == "user"]
    assert [m for m in messages if unknown_words(m, taught)] == []
    rng = random.Random(0)
    for original in messages[:300]:
        typed = misspell(original, rng)
        for word in unknown_words(typed, taught):        # each slip is one slip from a taught word
            assert len(word) < 4 or nearest_taught(word, taught) is not None, (original, typed)
