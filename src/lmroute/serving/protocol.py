"""The OpenAI chat-completion request as the server validates it, the route request, and errors.

A body that does not validate raises :class:`~lmroute.exceptions.RequestError` naming its field.

Only what routing reads is checked strictly (``model``, ``messages`` and their text). Every other
field (temperature, max_tokens, tools, response_format, vendor extensions...) is passed through to
the upstream untouched (``extra="allow"``), so the server never lags behind the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmroute.exceptions import RequestError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
#: What may hold a lone surrogate: a \uD800-\uDFFF escape, or the bytes of one (json reads UTF-8 with
#: "surrogatepass": ED A0-BF), or a NUL (a body in UTF-16 or UTF-32); only bodies that have one pay
#: for the full check of their strings.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


class ContentPart(BaseModel):
    """One part of a multi-part message; only text parts are read for routing."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        # Checked by hand: pydantic's union errors would report the string branch first.
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValueError(f"must be a string or a list of content parts, got {type(value).__name__}")
        for i, part in enumerate(value):
            if not isinstance(part, dict):
                raise ValueError(
                    f'part {i} must be an object such as {{"type": "text", "text": "..."}}, '
                    f"got {type(part).__name__}"
                )
            if not isinstance(part.get("type"), str):
                raise ValueError(f'part {i} needs a string "type", such as "text" or "image_url"')
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"part {i} is a text part whose 'text' is not a string")
        return value

    def text(self) -> str:
        """The message's text: the string, or its text parts joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if part.type == "text" and part.text)


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; unknown fields are kept and sent upstream."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    #: Strict, as OpenAI's API: lax mode would read "yes", "off" and 1 as booleans. null (which
    #: OpenAI accepts) means the default, no stream.
    stream: bool = Field(default=False, strict=True)

    @field_validator("stream", mode="before")
    @classmethod
    def _null_is_no_stream(cls, value: Any) -> Any:
        # Kept as None, it reached the code that reads a bool (and the upstream as null).
        return False if value is None else value


class RouteRequest(BaseModel):
    """``POST /v1/route``: a model string (or router and threshold) and messages or a prompt."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    router: str | None = None
    #: Strict: lax mode would read true as 1.0 and "0.5" as 0.5.
    threshold: float | None = Field(default=None, strict=True)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    prompt: str | None = None
    #: Names the conversation (as in chat completions) when conversations stay on their model.
    user: str | None = None


class RouteResponse(BaseModel):
    """What ``POST /v1/route`` answers: the score and the decision, with no LLM call."""

    router: str
    threshold: float
    score: float
    decision: Literal["strong", "weak"]
    model: str
    #: The target held online (``{"mode": "share", "value": 0.3}``), None for a fixed threshold.
    target: dict[str, Any] | None = None
    #: How the conversation was identified and whether it stayed on its model, or None.
    conversation: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorBody


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or RequestError (400) saying what is wrong."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RequestError("the request body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise RequestError(
            f"the request body is not valid JSON ({exc}); send a JSON object", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    if _MAYBE_SURROGATE.search(raw):
        # "\ud800" alone decodes to a str that cannot be encoded again: the upstream call would fail.
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except (UnicodeEncodeError, RecursionError):
            raise RequestError(
                "the request body holds an unpaired UTF-16 surrogate (such as \\ud800, escaped or "
                "encoded): send valid Unicode text",
                code="invalid_json",
            ) from None
    return body


def validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """``model`` validated from ``body``; the first problem becomes a RequestError naming its field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = _param(err["loc"])
        what = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        if err["type"] == "too_short" and param == "messages":
            what = "must hold at least one message"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise RequestError(f"{param or 'body'}: {what}{more}", param=param, code="invalid_value") from None


def _param(loc: Sequence[Any]) -> str:
    # pydantic names union members in the location ("content.list[ContentPart].0.text"): drop them.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "none")))]
    return ".".join(parts)
