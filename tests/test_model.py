"""Row/column embeddings on image codes (model.StreamEmbedding): where a code sits, what the
tables add, and that a model trained without them upgrades without changing its function."""
from __future__ import annotations

import pytest
import torch

from mmgen.model import (LETTER_PLACES, MMGenForCausalLM, StreamEmbedding, add_image_positions, build_model,
                         centred_first_column, image_code_index, letter_places, load_model, picture_letter_codes,
                         reference_ids, word_letter_ids)
from mmgen.stream import IMAGE_TOKENS, Conversation, Turn
from mmgen.world.lettering import first_column


def test_code_index_counts_each_picture_from_zero(tiny_stream):
    s = tiny_stream
    a, b = [i % s.codebook_size for i in range(IMAGE_TOKENS)], [7] * IMAGE_TOKENS
    conv = Conversation((Turn("user", "here", codes=tuple(a)), Turn("assistant", "ok", codes=tuple(b))))
    ids = torch.tensor(s.encode(conv).ids)
    index = image_code_index(ids, s.image_start, s.image_offset)
    is_code = ids >= s.image_offset
    assert is_code.sum() == 2 * IMAGE_TOKENS
    assert (index[~is_code] == -1).all()                        # words, specials, <image> itself
    assert index[is_code].tolist() == list(range(IMAGE_TOKENS)) * 2
    # batched and left-padded rows give the same answer per row
    padded = torch.cat([torch.full((3,), s.pad), ids])
    both = image_code_index(torch.stack([padded, padded]), s.image_start, s.image_offset)
    assert torch.equal(both[0, 3:], index) and (both[:, :3] == -1).all()


def test_reference_is_the_same_place_in_the_previous_picture(tiny_stream):
    s = tiny_stream
    first = [(3 * i) % s.codebook_size for i in range(IMAGE_TOKENS)]
    second = [(5 * i + 1) % s.codebook_size for i in range(IMAGE_TOKENS)]
    conv = Conversation((Turn("user", "here", codes=tuple(first)), Turn("assistant", "ok", codes=tuple(second)),
                         Turn("user", "again"), Turn("assistant", "ok", codes=tuple(first))))
    ids = torch.tensor(s.encode(conv).ids)[None]
    ref = reference_ids(ids, s.image_start, s.image_offset)[0]
    starts = (ids[0] == s.image_start).nonzero().flatten().tolist()
    assert len(starts) == 3
    # the first picture has nothing before it
    assert (ref[:starts[1]] == -1).all()
    for k, (before, now) in enumerate([(first, second), (second, first)], start=1):
        at = starts[k]
        # <image> predicts code 0, code j predicts code j + 1: each sees that code of the picture before
        expected = [s.image_offset + c for c in before]
        assert ref[at:at + IMAGE_TOKENS].tolist() == expected
        assert ref[at + IMAGE_TOKENS] == -1                      # the last code predicts </image>
    assert (ref[starts[1] + IMAGE_TOKENS + 1:starts[2]] == -1).all()   # words between pictures


def test_tables_add_a_row_and_a_column_vector_to_codes_only(tiny_stream):
    s = tiny_stream
    emb = StreamEmbedding(s.vocab_size, 8, image_start=s.image_start, image_offset=s.image_offset)
    with torch.no_grad():
        emb.image_rows.copy_(torch.arange(16.0)[:, None].expand(16, 8))
        emb.image_cols.copy_(100 * torch.arange(16.0)[:, None].expand(16, 8))
    ids = torch.tensor([[s.bos, s.image_start] + [s.image_offset] * 20])
    added = emb(ids) - torch.nn.functional.embedding(ids, emb.weight)
    assert (added[0, :2] == 0).all()
    code = 17                                                   # row 1, column 1
    assert torch.equal(added[0, 2 + code], torch.full((8,), 1 + 100.0))
    assert torch.equal(added[0, 2 + 3], torch.full((8,), 300.0))   # row 0, column 3


def test_adding_positions_keeps_the_function_and_the_tied_head(tiny_stream, tmp_path):
    plain = build_model("tiny", tiny_stream.vocab_size, seed=3).eval()
    ids = torch.tensor([[tiny_stream.bos, tiny_stream.image_start] + [tiny_stream.image_offset + 5] * 30])
    with torch.no_grad():
        before = plain(input_ids=ids).logits
        add_image_positions(plain, tiny_stream.image_start, tiny_stream.image_offset)
        assert torch.equal(plain(input_ids=ids).logits, before)           # tables start at zero
    emb = plain.get_input_embeddings()
    assert isinstance(emb, StreamEmbedding) and plain.lm_head.weight is emb.weight
    with torch.no_grad():
        emb.image_cols.normal_()
        changed = plain(input_ids=ids).logits
    assert not torch.allclose(changed, before)
    add_image_positions(plain, tiny_stream.image_start, tiny_stream.image_offset, reference=True)
    assert plain.config.mmgen_image_positions["reference"] is True
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, changed)   # zero too
        emb.reference.weight.normal_()
        two = torch.cat([ids, ids], 1)                                     # a second picture: references
        changed = plain(input_ids=two).logits
    plain.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert isinstance(again, MMGenForCausalLM) and isinstance(again.get_input_embeddings(), StreamEmbedding)
    assert again.lm_head.weight is again.get_input_embeddings().weight
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=two).logits, changed)


def test_a_checkpoint_without_positions_loads_as_it_was(tiny_stream, tmp_path):
    plain = build_model("tiny", tiny_stream.vocab_size, seed=4).eval()
    plain.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert type(again.get_input_embeddings()) is torch.nn.Embedding


def test_letter_places_count_each_run_of_letters_from_its_first(tiny_stream):
    s = tiny_stream
    glyph = [2, 5]                                             # two lettering codes
    letters = s.letter_ids(glyph)
    codes = [0] * IMAGE_TOKENS
    codes[2 * 16 + 4: 2 * 16 + 8] = [2, 5, 5, 2]               # a four-letter word in row 2, columns 4-7
    codes[3 * 16 + 14: 3 * 16 + 16] = [5, 5]                   # a run at the end of row 3 ...
    codes[4 * 16: 4 * 16 + 2] = [2, 2]                         # ... does not go on into row 4
    conv = Conversation((Turn("user", 'a sign that says "SALE" and a LONGWORDS sign'),
                         Turn("assistant", "ok", codes=tuple(codes))))
    ids = torch.tensor(s.encode(conv).ids)[None]
    is_letter = torch.isin(ids, torch.tensor(letters))
    index = image_code_index(ids, s.image_start, s.image_offset)
    place = letter_places(ids, is_letter, index)[0]
    text = [(s.text.decode([int(i)]), int(p)) for i, p in zip(ids[0], place) if 0 <= i < s.text_vocab]
    capitals = [(c, p) for c, p in text if len(c) == 1 and c.isupper()]
    assert capitals == list(zip("SALELONGWORDS", [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, -1]))
    assert all(p == -1 for c, p in text if not (len(c) == 1 and c.isupper()))
    at = int((ids[0] == s.image_start).nonzero()) + 1
    in_picture = place[at:at + IMAGE_TOKENS]
    assert in_picture[2 * 16 + 4: 2 * 16 + 8].tolist() == [0, 1, 2, 3]
    assert in_picture[3 * 16 + 14: 3 * 16 + 16].tolist() == [0, 1]
    assert in_picture[4 * 16: 4 * 16 + 2].tolist() == [0, 1]
    assert (in_picture[codes_not_letters(codes, glyph)] == -1).all()
    assert LETTER_PLACES == 8


def test_each_code_gets_the_letter_of_the_latest_word_in_its_column(tiny_stream):
    """The letter a sign draws in the column of the code a position predicts: the latest word's
    (a run of two or more capitals; "I" is no word), centred as the lettering centres it."""
    s = tiny_stream
    letters = s.letter_ids([2, 5])
    first = Conversation((Turn("user", 'I want a sign that says "SALE"'), Turn("assistant", "ok", codes=(0,) * IMAGE_TOKENS),
                          Turn("user", "now make it say HELLO, I said"), Turn("assistant", "ok", codes=(0,) * IMAGE_TOKENS)))
    ids = torch.tensor(s.encode(first).ids)[None]
    is_text_letter = torch.isin(ids, torch.tensor(letters)) & (ids < s.image_offset)
    index = image_code_index(ids, s.image_start, s.image_offset)
    got = word_letter_ids(ids, is_text_letter, index, s.image_start)[0]
    starts = (ids[0] == s.image_start).nonzero().flatten().tolist()
    for start, word in zip(starts, ["SALE", "HELLO"]):
        # the position at start + j predicts code j of this picture
        for j in range(IMAGE_TOKENS):
            k = j % 16 - first_column(len(word))
            want = s.text.encode(word[k])[0] if 0 <= k < len(word) else -1
            assert int(got[start + j]) == want, (word, j)
    before = starts[0]
    assert (got[:before] == -1).all()                       # words, not codes: no letter
    assert all(centred_first_column(torch.tensor(n)) == first_column(n) for n in range(2, 9))


@pytest.mark.parametrize("addition", ["word_letters", "picture_letters"])
def test_letter_additions_start_at_zero_and_survive_save_and_load(tiny_stream, tmp_path, addition):
    s = tiny_stream
    model = build_model("tiny", s.vocab_size, seed=5, image_positions=(s.image_start, s.image_offset),
                        letters=s.letter_ids([1, 2])).eval()
    codes = [3] * IMAGE_TOKENS
    codes[40:43] = [1, 2, 1]                                     # a sign to read
    conv = Conversation((Turn("user", 'a sign saying "ABA"'), Turn("assistant", "ok", codes=tuple(codes)),
                         Turn("user", "what does it say?"), Turn("assistant", "it says ABA")))
    ids = torch.tensor([s.encode(conv).ids])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        add_image_positions(model, s.image_start, s.image_offset, letters=s.letter_ids([1, 2]), **{addition: True})
        assert torch.equal(model(input_ids=ids).logits, before)             # zero until trained
        getattr(model.get_input_embeddings(), addition).weight.normal_()
        changed = model(input_ids=ids).logits
    assert not torch.allclose(changed, before)
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert again.config.mmgen_image_positions[addition] is True
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, changed)


def test_words_after_a_picture_get_the_sign_letter_they_would_spell(tiny_stream):
    """Reading: the word position before a capital gets the sign's first letter (top and bottom
    codes), the k-th capital of a run the (k+1)-th, the last capital nothing (the sign ends)."""
    s = tiny_stream
    glyph = [2, 5, 8, 11, 14, 17, 20, 23]                       # lettering codes
    letters = s.letter_ids(glyph)
    codes = [0] * IMAGE_TOKENS
    top, bottom = [2, 5, 8, 11], [14, 17, 20, 23]               # four letters, rows 7 and 8, columns 6-9
    codes[7 * 16 + 6: 7 * 16 + 10], codes[8 * 16 + 6: 8 * 16 + 10] = top, bottom
    conv = Conversation((Turn("user", "what does the sign say?", codes=tuple(codes)),
                         Turn("assistant", "the sign says SALE.")))
    ids = torch.tensor(s.encode(conv).ids)[None]
    is_letter = torch.isin(ids, torch.tensor(letters))
    index = image_code_index(ids, s.image_start, s.image_offset)
    place = letter_places(ids, is_letter, index)
    got = picture_letter_codes(ids, is_letter, index, place, s.image_start)[0]
    end = int((ids[0] == s.image_start).nonzero()) + IMAGE_TOKENS
    assert (got[:end + 1] == -1).all()                          # the picture itself and everything before
    code = lambda c: s.image_offset + c                          # noqa: E731
    words = [(s.text.decode([int(i)]), got[t].tolist()) for t, i in enumerate(ids[0]) if t > end and i < s.text_vocab]
    capitals = [(w, g) for w, g in words if len(w) == 1 and w.isupper()]
    assert capitals == [(c, [code(top[k + 1]), code(bottom[k + 1])] if k < 3 else [-1, -1])
                        for k, c in enumerate("SALE")]
    others = [g for w, g in words if not (len(w) == 1 and w.isupper())]
    assert others and all(g == [code(top[0]), code(bottom[0])] for g in others)


def codes_not_letters(codes, glyph):
    return torch.tensor([c not in glyph for c in codes])


def test_letter_places_start_at_zero_and_survive_save_and_load(tiny_stream, tmp_path):
    s = tiny_stream
    model = build_model("tiny", s.vocab_size, seed=5, image_positions=(s.image_start, s.image_offset)).eval()
    ids = torch.tensor([s.encode(Conversation((Turn("user", 'a sign saying "OPEN"'),))).ids])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        add_image_positions(model, s.image_start, s.image_offset, letters=s.letter_ids([1, 2]))
        assert torch.equal(model(input_ids=ids).logits, before)             # zero until trained
        model.get_input_embeddings().letter_places.normal_()
        changed = model(input_ids=ids).logits
    assert not torch.allclose(changed, before)
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert again.config.mmgen_image_positions["letters"] == s.letter_ids([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, changed)
