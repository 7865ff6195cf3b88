"""Request bodies of the HTTP API (strict: wrong types and unknown fields are 400s naming the field)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from inference.chat import ROLES
from inference.precision import PRECISIONS


class Strict(BaseModel):
    """No type coercion, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(Strict):
    include_usage: bool = False


class SamplingFields(Strict):
    """Fields shared by completions and chat completions."""

    model: str
    max_tokens: int | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    n: Literal[1] = 1
    user: str | None = None
    session_id: str | None = None


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: bool = False
    logprobs: None = None
    best_of: Literal[1] | None = None
    suffix: None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal[ROLES]  # type: ignore[valid-type]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = None
    logprobs: Literal[False] | None = None


class LoadRequest(Strict):
    """``POST /control/load`` and ``/control/swap``."""

    path: Annotated[str, Field(min_length=1)]
    precision: Literal[PRECISIONS] = "fp32"  # type: ignore[valid-type]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    model_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    device: str = "auto"


class ExpireRequest(Strict):
    """``POST /control/sessions/expire``."""

    idle_s: Annotated[float, Field(ge=0.0)] | None = None


class PerplexityRequest(Strict):
    """``POST /control/perplexity``."""

    texts: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=10_000)]
