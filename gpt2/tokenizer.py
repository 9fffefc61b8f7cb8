"""GPT-2's byte-pair tokenizer, built offline from assets/gpt2.tiktoken, and UTF-8-safe incremental decoding."""

import base64
import codecs
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

from .config import EOT_ID, VOCAB_SIZE
from .paths import VOCAB_FILE

EXPECTED_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


class TokenizerError(RuntimeError):
    """The vocabulary file is missing or is not GPT-2's."""


@lru_cache(maxsize=4)
def load_encoding(path: str | os.PathLike = VOCAB_FILE) -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding from a local ranks file whose sha256 is checked first."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"cannot read the GPT-2 vocabulary at {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != EXPECTED_SHA256:
        raise TokenizerError(
            f"{path} is not GPT-2's vocabulary (sha256 {digest[:12]}…, expected {EXPECTED_SHA256[:12]}…)"
        )
    # tiktoken's text format: one "base64(token bytes) rank" pair a line.
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


class Tokenizer:
    """Encode, decode, and show GPT-2 tokens.

    A literal "<|endoftext|>" typed in text is encoded as plain text unless `allow_special=True`.
    """

    eot_id = EOT_ID
    n_vocab = VOCAB_SIZE

    def __init__(self, path: str | os.PathLike = VOCAB_FILE):
        self.encoding = load_encoding(path)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special={EOT})
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids], errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.encoding.decode_single_token_bytes(int(token_id))

    def token_text(self, token_id: int) -> str:
        """One token's text on its own, for display: bytes that are only part of a character (GPT-2
        splits an emoji into several byte tokens) show as their hex codes: b" \\xf0\\x9f" reads
        " ‹F0›‹9F›"."""
        return self.token_bytes(token_id).decode("utf-8", errors=_HEX_BYTES)

    def incremental_decoder(self) -> "IncrementalDecoder":
        return IncrementalDecoder(self)


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    """A codec error handler: the undecodable bytes as `‹F0›‹9F›`."""
    return "".join(f"‹{b:02X}›" for b in error.object[error.start : error.end]), error.end


_HEX_BYTES = "gpt2-hex-bytes"
codecs.register_error(_HEX_BYTES, _hex_bytes)


class IncrementalDecoder:
    """Turn a stream of token ids into text without ever emitting half a character.

    A token that ends inside a multi-byte UTF-8 character is held until the bytes that complete it
    arrive; bytes that can never form a character become U+FFFD.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


@lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The shared tokenizer built from the bundled vocabulary."""
    return Tokenizer()
