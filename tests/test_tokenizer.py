import pytest

from gpt2 import Tokenizer, TokenizerError
from gpt2.paths import VOCAB_FILE


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


def test_known_ids(tok):
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("<|endoftext|>", allow_special=True) == [50256]
    assert tok.decode([15496, 995]) == "Hello world"


def test_typed_endoftext_is_plain_text_by_default(tok):
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids
    assert tok.decode(ids) == "a<|endoftext|>b"


def test_round_trip_on_hard_text(tok):
    text = "naïve café 😀 שלום 日本語 e\u0301 \t\n\x00 <script>"
    assert tok.decode(tok.encode(text)) == text


def test_hash_is_verified(tmp_path):
    bad = tmp_path / "gpt2.tiktoken"
    data = VOCAB_FILE.read_bytes()
    bad.write_bytes(data[:-10] + b"AAAAAAAAAA")
    with pytest.raises(TokenizerError, match="sha256"):
        Tokenizer(bad)
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer(tmp_path / "missing.tiktoken")


def test_incremental_decoding_never_emits_half_a_character(tok):
    text = "a 😀 b 日本 c 🇫🇷!"
    ids = tok.encode(text)
    # The emoji and CJK characters span several tokens, each ending inside a character.
    assert any("‹" in tok.token_text(i) for i in ids)
    decoder = tok.incremental_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == text
    assert "" in pieces  # at least one token was held back


def test_incremental_decoding_replaces_bytes_that_never_complete(tok):
    decoder = tok.incremental_decoder()
    partial = tok.encode("😀")[0]  # the first bytes of a 4-byte character
    assert decoder.push(partial) == ""
    assert decoder.push(tok.encode("x")[0]) == "\ufffdx"


def test_a_token_that_is_part_of_a_character_shows_its_bytes(tok):
    ids = tok.encode("I love 🍕")
    assert [tok.token_text(i) for i in ids] == ["I", " love", " ‹F0›‹9F›", "‹8D›", "‹95›"]
    assert tok.decode(ids) == "I love 🍕"
