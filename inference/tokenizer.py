"""Tokenizers behind one small interface: the byte-level tokenizer of native models and a Hugging Face wrapper.

Byte tokenizer ids: 0-255 are the bytes of the UTF-8 text, then ``<bos>`` 256, ``<eos>`` 257, ``<pad>`` 258 and one
reserved id 259. Decoding is incremental (``stream_decoder``) so a multi-byte character split over two tokens is
emitted once it is complete.
"""

from __future__ import annotations

import codecs
from typing import Any, Protocol


class StreamDecoder(Protocol):
    """Turns token ids into text pieces as they arrive."""

    def feed(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


class Tokenizer(Protocol):
    """What the engine needs from a tokenizer."""

    name: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int

    def encode(self, text: str, bos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def stream_decoder(self) -> StreamDecoder: ...


class _ByteStream:
    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        if token_id > 255:
            return ""
        return self._dec.decode(bytes([token_id]))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class ByteTokenizer:
    """UTF-8 bytes plus four special ids."""

    name = "byte"
    BOS, EOS, PAD, RESERVED = 256, 257, 258, 259
    vocab_size = 260
    bos_id: int | None = BOS
    eos_id: int | None = EOS
    pad_id = PAD

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Byte ids of ``text``, preceded by ``<bos>`` when asked."""
        ids = list(text.encode("utf-8"))
        return [self.BOS, *ids] if bos else ids

    def decode(self, ids: list[int]) -> str:
        """Text of the byte ids (special ids are dropped; invalid UTF-8 becomes U+FFFD)."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        """An incremental decoder for one sequence."""
        return _ByteStream()


class _HFStream:
    def __init__(self, tok: Any) -> None:
        self._tok = tok
        self._ids: list[int] = []
        self._emitted = 0

    def _text(self) -> str:
        text: str = self._tok.decode(self._ids, skip_special_tokens=True)
        return text

    def feed(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._text()
        if text.endswith("\ufffd"):
            return ""
        piece, self._emitted = text[self._emitted :], len(text)
        return piece

    def flush(self) -> str:
        text = self._text()
        piece, self._emitted = text[self._emitted :], len(text)
        return piece


class HFTokenizer:
    """Wraps a ``transformers`` tokenizer."""

    name = "hf"

    def __init__(self, tok: Any, vocab_size: int) -> None:
        self.tok = tok
        self.vocab_size = vocab_size
        self.bos_id = tok.bos_token_id
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Token ids; the tokenizer's own special tokens are added when ``bos``."""
        ids = self.tok.encode(text, add_special_tokens=bos)
        return ids if ids or self.bos_id is None else [self.bos_id]

    def decode(self, ids: list[int]) -> str:
        """Text without special tokens."""
        text: str = self.tok.decode(ids, skip_special_tokens=True)
        return text

    def stream_decoder(self) -> StreamDecoder:
        """Incremental decoder: re-decodes the ids so far and emits the new suffix."""
        return _HFStream(self.tok)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str | None:
        """The tokenizer's own chat template, when it has one."""
        if not getattr(self.tok, "chat_template", None):
            return None
        prompt: str = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt
