"""Chat messages: `ChatMessage`, `ToolCall`, `Role`, and the OpenAI chat-completions wire format."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from memweave.errors import InvalidMessage

__all__ = ["ChatMessage", "ContentPart", "Role", "ToolCall", "new_message_id"]

Role = Literal["system", "user", "assistant", "tool"]
"""Who wrote a message: `system`, `user`, `assistant` (the model) or `tool` (a tool's result)."""

ContentPart = dict[str, JsonValue]
"""One OpenAI content part (`{"type": "text", "text": ...}`, `image_url`, `input_audio`, `file`)."""

CONTENT_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
MAX_ID_LENGTH = 256
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
"""Ids are non-empty and hold no control characters."""


def new_message_id() -> str:
    """Return a fresh, globally unique message id (a UUID4 in hex)."""
    return uuid.uuid4().hex


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset():
        return value.astimezone(UTC)
    return value


# Errors that explain the input better than their siblings: a union reports one error per
# branch, and only these say what was wrong with the value itself.
_EXPLAINING = ("value_error", "finite_number", "string_unicode")


def _first_error_field(exc: ValidationError) -> tuple[str | None, str]:
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] in _EXPLAINING), errors[0])
    original = error.get("ctx", {}).get("error")
    if isinstance(original, InvalidMessage):
        return original.field, original.reason
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    field = loc[0] if loc else None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "finite_number":
        message = _not_finite(error["input"])
    elif error["type"] == "string_unicode" and isinstance(error["input"], str):
        message = _unencodable(error["input"]) or message
    return field, message


def _not_finite(value: object) -> str:
    return (
        f"holds the number {value!r}, which JSON cannot represent (it would be stored as "
        "null); use a finite number, a string or None"
    )


def _unencodable(text: str) -> str | None:
    """Why `text` cannot be stored (a lone surrogate, which UTF-8 cannot encode), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds the lone surrogate {text[exc.start]!r} at index {exc.start}, which is not "
            "Unicode text and cannot be encoded as UTF-8 (join surrogate pairs, e.g. with "
            "s.encode('utf-16', 'surrogatepass').decode('utf-16'), or drop them)"
        )
    return None


def json_problem(value: object, *, text_values: bool = True, path: str = "") -> str | None:
    """What in a JSON value cannot be stored exactly, or None when all of it can.

    A non-finite float (`nan`, `inf`) would be stored as `null`, and a string holding a lone
    surrogate cannot be encoded at all; as a dict key, pydantic would write it as invalid
    UTF-8. Keys are always checked (cheap for ASCII keys), string values only with
    `text_values`. The answer starts with where, e.g. `at ['a'][0]: ...`, below `path`.
    """
    why: str | None = None
    if isinstance(value, float):
        why = None if math.isfinite(value) else _not_finite(value)
    elif isinstance(value, str):
        why = _unencodable(value) if text_values else None
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (bad_key := _unencodable(key)) is not None:
                return f"at {path or 'the top'}, key {key!r}: {bad_key}"
            inner = f"{path}[{key!r}]"
            if (found := json_problem(item, text_values=text_values, path=inner)) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            inner = f"{path}[{index}]"
            if (found := json_problem(item, text_values=text_values, path=inner)) is not None:
                return found
    if why is None:
        return None
    return f"at {path}: {why}" if path else why


_NEVER_IN_IDS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def could_be_id(text: str) -> bool:
    """Whether a stored message or session could have the id `text`: 1 to 256 characters,
    none of them a control character or a lone surrogate. An id that could not is known to
    be stored nowhere, so no backend needs to be asked (or to encode it)."""
    return 0 < len(text) <= MAX_ID_LENGTH and _NEVER_IN_IDS.search(text) is None


def storage_problem(message: ChatMessage) -> tuple[str, str] | None:
    """The first field of `message` that cannot be stored exactly, as `(field, reason)`.

    Finds what validation lets through: lone surrogates in any text (UTF-8 cannot encode
    them), and non-finite floats in `metadata` or content parts of a message that was not
    built by validation of Python objects (`model_validate_json`, `model_construct`).
    """
    for name in ("id", "name", "tool_call_id", "refusal"):
        value = getattr(message, name)
        if isinstance(value, str) and (why := _unencodable(value)) is not None:
            return name, why
    if (why := json_problem(message.content)) is not None:
        return "content", why
    for index, call in enumerate(message.tool_calls):
        for name in ("id", "name", "arguments"):
            if (why := _unencodable(getattr(call, name))) is not None:
                return "tool_calls", f"at [{index}].{name}: {why}"
    if (why := json_problem(message.metadata)) is not None:
        return "metadata", why
    return None


def invalid_message_from(exc: ValidationError, *, position: int | None = None) -> InvalidMessage:
    """Translate a pydantic `ValidationError` into an `InvalidMessage` naming the field."""
    field, message = _first_error_field(exc)
    return InvalidMessage(message, field=field, position=position)


class _ValidatedModel(BaseModel):
    """A pydantic model whose validation entry points raise `InvalidMessage`, not pydantic's
    `ValidationError`, so no pydantic exception escapes them."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid_message_from(exc) from None

    # Only the error type differs from BaseModel.__init__, so pydantic may skip this wrapper when
    # it validates nested or JSON input (the codec maps those errors itself); this halves the
    # cost of decoding a stored page.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Validate a dict (or model) into this model; bad input raises `InvalidMessage`."""
        try:
            return super().model_validate(obj, **options)
        except ValidationError as exc:
            raise invalid_message_from(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """Validate a JSON document into this model; bad input raises `InvalidMessage`."""
        try:
            return super().model_validate_json(json_data, **options)
        except ValidationError as exc:
            raise invalid_message_from(exc) from None

    @classmethod
    def model_validate_strings(cls, obj: Any, **options: Any) -> Self:
        """Validate a dict of strings into this model; bad input raises `InvalidMessage`."""
        try:
            return super().model_validate_strings(obj, **options)
        except ValidationError as exc:
            raise invalid_message_from(exc) from None


def _check_content_parts(value: list[ContentPart]) -> list[ContentPart]:
    for index, part in enumerate(value):
        kind = part.get("type")
        if kind not in CONTENT_PART_TYPES:
            raise ValueError(
                f"content part {index} has type {kind!r}; expected one of "
                f"{sorted(CONTENT_PART_TYPES)}"
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise ValueError(f"text content part {index} needs a string 'text'")
    return value


class ToolCall(_ValidatedModel):
    """A function call requested by the model in an assistant message.

    Bad input, built or validated (`model_validate`, `model_validate_json`), raises
    `InvalidMessage` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    """The call id that the matching tool message quotes in `tool_call_id`."""
    name: str = Field(min_length=1)
    """Name of the function to call."""
    arguments: str = "{}"
    """The arguments as the model wrote them: a JSON document in a string, kept verbatim."""


class ChatMessage(_ValidatedModel):
    """One message of a conversation.

    Immutable; build one with `ChatMessage.user(...)`, `.assistant(...)`, `.system(...)` or
    `.tool(...)`. Bad input raises `InvalidMessage` naming the field, also from
    `model_validate` and `model_validate_json`. JSON-valued fields (`metadata`, content parts)
    refuse `nan` and infinities, which JSON cannot hold. Text holding a lone surrogate
    (`"\\ud800"`, which UTF-8 cannot encode) is refused by `from_openai`, and by every history's
    `add_messages`, naming the field.

    Example:
        ```python
        msg = ChatMessage.user("What is the capital of France?", name="ada")
        assert msg.text.startswith("What")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    role: Role
    """Who wrote the message."""
    content: str | Annotated[list[ContentPart], AfterValidator(_check_content_parts)] = ""
    """A string, or a list of OpenAI content parts kept exactly as given."""
    name: str | None = None
    """The author's name (an agent or a user), sent to the model when set."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Function calls the model asked for; only on `assistant` messages."""
    tool_call_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The id of the call this message answers; required on, and only on, `tool` messages."""
    refusal: str | None = None
    """The model's refusal text, when it refused; only on `assistant` messages."""
    id: str = Field(default_factory=new_message_id, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    """Unique message id; histories are idempotent by it. Generated when absent."""
    created_at: Annotated[datetime, AfterValidator(_as_utc)] = Field(default_factory=_utcnow)
    """When the message was created, in UTC. Naive datetimes are taken as UTC."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """Free-form JSON data kept with the message and never sent to a model."""

    @model_validator(mode="after")
    def _check_role_fields(self) -> Self:
        # InvalidMessage passes through pydantic unwrapped, so the field name survives.
        if self.role == "tool":
            if not self.tool_call_id:
                raise InvalidMessage("required on a tool message", field="tool_call_id")
        elif self.tool_call_id is not None:
            raise InvalidMessage("only allowed on tool messages", field="tool_call_id")
        if self.role != "assistant":
            if self.tool_calls:
                raise InvalidMessage("only allowed on assistant messages", field="tool_calls")
            if self.refusal is not None:
                raise InvalidMessage("only allowed on assistant messages", field="refusal")
        return self

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def user(cls, text: str | list[ContentPart], *, name: str | None = None, **fields: Any) -> Self:
        """Build a user message from text (or content parts)."""
        return cls(role="user", content=text, name=name, **fields)

    @classmethod
    def assistant(
        cls,
        text: str | list[ContentPart] = "",
        *,
        tool_calls: Iterable[ToolCall] = (),
        name: str | None = None,
        **fields: Any,
    ) -> Self:
        """Build an assistant message, optionally carrying tool calls."""
        return cls(
            role="assistant", content=text, tool_calls=tuple(tool_calls), name=name, **fields
        )

    @classmethod
    def system(cls, text: str | list[ContentPart], **fields: Any) -> Self:
        """Build a system message."""
        return cls(role="system", content=text, **fields)

    @classmethod
    def tool(cls, tool_call_id: str, content: str | list[ContentPart], **fields: Any) -> Self:
        """Build the result of the tool call `tool_call_id`."""
        return cls(role="tool", tool_call_id=tool_call_id, content=content, **fields)

    # -- views --------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The message's text: the content string, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(part["text"]) for part in self.content if part.get("type") == "text")

    # -- OpenAI wire format -------------------------------------------------------------------

    def to_openai(self) -> dict[str, Any]:
        """Return the message in the OpenAI chat-completions format.

        `id`, `created_at` and `metadata` are left out. An assistant message with tool calls and
        no text, or a refusal and no text, has `content: null`, as OpenAI writes it.
        """
        out: dict[str, Any] = {"role": self.role}
        no_text = self.role == "assistant" and self.content == ""
        if no_text and (self.tool_calls or self.refusal is not None):
            out["content"] = None
        elif isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [dict(part) for part in self.content]
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.refusal is not None:
            out["refusal"] = self.refusal
        return out

    @classmethod
    def from_openai(cls, data: Mapping[str, Any], **fields: Any) -> Self:
        """Build a message from an OpenAI chat-completions message dict.

        Keys the OpenAI SDK reports as empty (`function_call`, `audio`, `annotations` set to
        `None` or `[]`) are ignored; any other unknown key raises `InvalidMessage` naming it,
        as does text that cannot be stored (a lone surrogate, e.g. half of an emoji split
        across streamed chunks). Extra keyword arguments (`id`, `created_at`, `metadata`) are
        set on the message.
        """
        if not isinstance(data, Mapping):
            raise InvalidMessage(f"expected a mapping, got {type(data).__name__}")
        known = {"role", "content", "name", "tool_calls", "tool_call_id", "refusal"}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                if value is not None:
                    values[key] = value
            elif key in {"function_call", "audio", "annotations"} and not value:
                continue
            else:
                raise InvalidMessage("unknown field", field=str(key))
        raw_calls = values.pop("tool_calls", None) or []
        calls: list[ToolCall] = []
        for index, raw in enumerate(raw_calls):
            if not isinstance(raw, Mapping):
                raise InvalidMessage(f"tool call {index} is not a mapping", field="tool_calls")
            if raw.get("type", "function") != "function":
                raise InvalidMessage(
                    f"tool call {index} has type {raw.get('type')!r}; only 'function' is supported",
                    field="tool_calls",
                )
            function = raw.get("function")
            if not isinstance(function, Mapping):
                raise InvalidMessage(f"tool call {index} has no 'function'", field="tool_calls")
            try:
                calls.append(
                    ToolCall(
                        id=raw.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments", "{}"),
                    )
                )
            except InvalidMessage as exc:
                raise InvalidMessage(
                    f"tool call {index}: {exc.field}: {exc.reason}", field="tool_calls"
                ) from None
        values.setdefault("content", "")
        message = cls(**values, tool_calls=tuple(calls), **fields)
        problem = storage_problem(message)
        if problem is not None:
            raise InvalidMessage(problem[1], field=problem[0])
        return message


def validate_messages(messages: Sequence[ChatMessage] | Iterable[ChatMessage]) -> list[ChatMessage]:
    """Return `messages` as a list; a non-message raises `InvalidMessage` with its position."""
    if isinstance(messages, ChatMessage):
        raise InvalidMessage("expected a sequence of messages, got a single ChatMessage")
    if isinstance(messages, str | bytes | Mapping):
        raise InvalidMessage(f"expected a sequence of messages, got {type(messages).__name__}")
    out = list(messages)
    for position, message in enumerate(out):
        if not isinstance(message, ChatMessage):
            raise InvalidMessage(
                f"expected a ChatMessage, got {type(message).__name__}", position=position
            )
    return out
