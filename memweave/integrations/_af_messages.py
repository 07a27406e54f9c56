"""Lossless message conversion between Agent Framework and memweave.

The public names are re-exported by `memweave.integrations.agent_framework`, whose docstring
describes the mapping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from memweave.errors import InvalidMessage, MissingDependency
from memweave.messages import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    ChatMessage,
    ContentPart,
    ToolCall,
    new_message_id,
)

try:
    from agent_framework import Content, Message
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("agent_framework", "agent-framework") from exc

__all__ = ["METADATA_KEY", "messages_from_memweave", "messages_to_memweave"]

logger = logging.getLogger("memweave.integrations.agent_framework")

METADATA_KEY = "agent_framework"
"""Key under `ChatMessage.metadata` holding what memweave's own fields cannot."""

_FORMAT = 1
_ROLES = frozenset({"system", "user", "assistant", "tool"})
_VALID_ID = re.compile(ID_PATTERN)
_MISSING = object()

_Json = dict[str, Any]


# -- AF -> memweave -----------------------------------------------------------------------------


def _valid_id(value: object) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and bool(_VALID_ID.match(value))
    )


def _stored_id(af_id: str, part: int) -> str:
    candidate = af_id if part == 0 else f"{af_id}#{part}"
    if _valid_id(candidate):
        return candidate
    # Deterministic, so saving the same AF message again still finds the stored id.
    digest = hashlib.blake2b(f"{af_id}\x00{part}".encode(), digest_size=16).hexdigest()
    return f"af-{digest}"


def _json(value: Any, position: int) -> Any:
    """Return a JSON copy of `value`, so the stored form reads back exactly as it was written."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(
            f"Agent Framework serializes it to data that is not JSON: {exc}", position=position
        ) from None


# The contents memweave's own fields rebuild, as the installed Agent Framework serializes them,
# so a stored message only records how it differs from these, whatever the AF version.


def _text(text: str, *, refusal: bool = False) -> _Json:
    props = {"core": {"model_output_kind": "refusal"}} if refusal else None
    return Content.from_text(text, additional_properties=props).to_dict()


def _image(url: str) -> _Json:
    if url.startswith("data:"):
        media_type = url[5:].split(";", 1)[0].split(",", 1)[0] or "image/*"
        return Content("data", uri=url, media_type=media_type).to_dict()
    media_type = mimetypes.guess_type(url)[0] or "image/*"
    return Content("uri", uri=url, media_type=media_type).to_dict()


def _call(call: ToolCall, *, as_object: bool) -> _Json:
    arguments: Any = json.loads(call.arguments) if as_object else call.arguments
    return Content.from_function_call(call.id, call.name, arguments=arguments).to_dict()


def _result(call_id: str, text: str) -> _Json:
    return Content.from_function_result(call_id, result=text).to_dict()


def _diff(entry: _Json, actual: _Json, synthesized: _Json) -> _Json:
    """Record in `entry` how `actual` differs from what the native fields rebuild."""
    changed = {k: v for k, v in actual.items() if synthesized.get(k, _MISSING) != v}
    missing = [k for k in synthesized if k not in actual]
    if changed:
        entry["set"] = changed
    if missing:
        entry["unset"] = missing
    return entry


def _is_refusal(content: _Json) -> bool:
    props = content.get("additional_properties") or {}
    core = props.get("core")
    kind = core.get("model_output_kind") if isinstance(core, Mapping) else None
    return (kind or props.get("model_output_kind")) == "refusal"


@dataclass
class _Native:
    """The memweave fields of one message being built, and how its AF contents map onto them."""

    parts: list[ContentPart] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    refusal: str | None = None
    layout: list[_Json] = field(default_factory=list)

    def add(self, content: _Json, role: str) -> None:
        kind = content.get("type")
        text = content.get("text")
        if kind == "text" and isinstance(text, str):
            if role == "assistant" and self.refusal is None and _is_refusal(content):
                self.refusal = text
                self.layout.append(_diff({"k": "refusal"}, content, _text(text, refusal=True)))
            else:
                self.parts.append({"type": "text", "text": text})
                self.layout.append(_diff({"k": "text"}, content, _text(text)))
            return
        uri, media_type = content.get("uri"), content.get("media_type")
        if (
            kind in ("data", "uri")
            and role == "user"
            and isinstance(uri, str)
            and isinstance(media_type, str)
            and media_type.startswith("image/")
        ):
            self.parts.append({"type": "image_url", "image_url": {"url": uri}})
            self.layout.append(_diff({"k": "image"}, content, _image(uri)))
            return
        if kind == "function_call" and role == "assistant":
            call = _tool_call(content)
            if call is not None:
                as_object = isinstance(content.get("arguments"), Mapping)
                self.calls.append(call)
                entry: _Json = {"k": "call", "obj": True} if as_object else {"k": "call"}
                self.layout.append(_diff(entry, content, _call(call, as_object=as_object)))
                return
        self.layout.append({"k": "raw", "c": content})

    def content(self) -> str | list[ContentPart]:
        if not self.parts:
            return ""
        if len(self.parts) == 1 and self.parts[0]["type"] == "text":
            return str(self.parts[0]["text"])
        return self.parts


def _tool_call(content: _Json) -> ToolCall | None:
    call_id, name, arguments = content.get("call_id"), content.get("name"), content.get("arguments")
    if not (_valid_id(call_id) and isinstance(name, str) and name):
        return None
    if arguments is None:
        text = "{}"
    elif isinstance(arguments, str):
        text = arguments
    elif isinstance(arguments, Mapping):
        text = json.dumps(arguments)
    else:
        return None
    return ToolCall(id=call_id, name=name, arguments=text)


def _default_kinds(message: ChatMessage) -> list[str]:
    """The layout memweave's own fields imply when a message carries no AF metadata."""
    if message.role == "tool":
        return ["result"]
    kinds: list[str] = []
    if isinstance(message.content, str):
        kinds += ["text"] if message.content else []
    else:
        for part in message.content:
            kind = part.get("type")
            kinds.append("text" if kind == "text" else "image" if kind == "image_url" else "part")
    if message.refusal is not None:
        kinds.append("refusal")
    return kinds + ["call"] * len(message.tool_calls)


def _finish(
    role: str,
    native: _Native,
    *,
    meta: _Json,
    message_id: str,
    name: str | None,
    position: int,
    tool_call_id: str | None = None,
    tool_text: str = "",
) -> ChatMessage:
    try:
        if tool_call_id is not None:
            message = ChatMessage.tool(tool_call_id, tool_text, id=message_id)
        else:
            message = ChatMessage(
                role=role,
                content=native.content(),
                name=name,
                tool_calls=tuple(native.calls),
                refusal=native.refusal,
                id=message_id,
            )
        kinds = [str(entry["k"]) for entry in native.layout]
        if kinds != _default_kinds(message) or any(len(entry) > 1 for entry in native.layout):
            meta["contents"] = native.layout
        if not meta:
            return message
        metadata: dict[str, JsonValue] = {METADATA_KEY: _json({"v": _FORMAT, **meta}, position)}
        return message.model_copy(update={"metadata": metadata})
    except InvalidMessage as exc:
        raise InvalidMessage(exc.reason, field=exc.field, position=position) from None


def _convert_one(message: Message, position: int) -> list[ChatMessage]:
    data = _json(message.to_dict(), position)
    data.pop("type", None)
    af_role = str(data.pop("role", "user"))
    contents: list[_Json] = data.pop("contents", None) or []
    author = data.pop("author_name", None)
    af_id = str(data.pop("message_id"))
    props = data.pop("additional_properties", None) or {}
    meta: _Json = {}
    if props:
        meta["additional_properties"] = props
    if data:
        meta["extra"] = data

    results = [
        i
        for i, c in enumerate(contents)
        if c.get("type") == "function_result" and _valid_id(c.get("call_id"))
    ]
    if af_role == "tool" and results:
        if author is not None:
            meta["author_name"] = author
        starts = [0, *results[1:]]
        ends = [*results[1:], len(contents)]
        out: list[ChatMessage] = []
        for part, (start, end) in enumerate(zip(starts, ends, strict=True)):
            part_meta = dict(meta) if part == 0 else {}
            native = _Native()
            result = contents[results[part]]
            text = result.get("result")
            tool_text = text if isinstance(text, str) else "" if text is None else json.dumps(text)
            for index in range(start, end):
                if index == results[part]:
                    native.layout.append(
                        _diff({"k": "result"}, result, _result(result["call_id"], tool_text))
                    )
                else:
                    native.layout.append({"k": "raw", "c": contents[index]})
            stored_id = _stored_id(af_id, part)
            if len(results) > 1:
                part_meta["part"] = [part, len(results)]
            if stored_id != af_id or len(results) > 1:
                part_meta["message_id"] = af_id
            out.append(
                _finish(
                    "tool",
                    native,
                    meta=part_meta,
                    message_id=stored_id,
                    name=None,
                    position=position,
                    tool_call_id=result["call_id"],
                    tool_text=tool_text,
                )
            )
        return out

    role = af_role if af_role in _ROLES and af_role != "tool" else "user"
    if role != af_role:
        meta["role"] = af_role
    native = _Native()
    for content in contents:
        native.add(content, role)
    stored_id = _stored_id(af_id, 0)
    if stored_id != af_id:
        meta["message_id"] = af_id
    return [_finish(role, native, meta=meta, message_id=stored_id, name=author, position=position)]


def messages_to_memweave(messages: Sequence[Message]) -> list[ChatMessage]:
    """Convert Agent Framework messages to memweave messages, losing nothing.

    A message without a `message_id` gets a fresh one, set on the Agent Framework message
    itself (as Agent Framework's own vector-store history does), so converting or saving the
    same message again gives the same memweave id. Messages are never matched by content.

    Args:
        messages: Agent Framework `Message` objects, oldest first.

    Returns:
        The memweave messages, oldest first; a tool message holding several function results
        becomes one memweave tool message per result.

    Raises:
        InvalidMessage: An item is not an Agent Framework `Message`, or holds data that
            Agent Framework cannot serialize to JSON.

    Example:
        ```python
        from agent_framework import Message

        stored = messages_to_memweave([Message("user", ["hi"], author_name="ada")])
        assert stored[0].text == "hi" and stored[0].name == "ada"
        ```
    """
    if isinstance(messages, Message):
        raise InvalidMessage("expected a sequence of Agent Framework messages, got one Message")
    out: list[ChatMessage] = []
    for position, message in enumerate(messages):
        if not isinstance(message, Message):
            raise InvalidMessage(
                f"expected an agent_framework Message, got {type(message).__name__}",
                position=position,
            )
        if not message.message_id:
            message.message_id = new_message_id()
        out.extend(_convert_one(message, position))
    return out


# -- memweave -> AF -----------------------------------------------------------------------------


class _LayoutMismatch(Exception):
    """The AF layout stored with a message does not fit its memweave fields."""


def _part_content(part: ContentPart) -> _Json:
    kind = part.get("type")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if isinstance(audio, Mapping):
            fmt = str(audio.get("format", "wav"))
            uri = f"data:audio/{fmt};base64,{audio.get('data', '')}"
            return {"type": "data", "uri": uri, "media_type": f"audio/{fmt}"}
    if kind == "file":
        file = part.get("file")
        if isinstance(file, Mapping):
            if isinstance(file.get("file_data"), str):
                uri = str(file["file_data"])
                media_type = uri[5:].split(";", 1)[0] if uri.startswith("data:") else None
                return {"type": "data", "uri": uri, "media_type": media_type or "application/pdf"}
            if isinstance(file.get("file_id"), str):
                return {"type": "hosted_file", "file_id": file["file_id"]}
    if kind == "refusal":
        return _text(str(part.get("refusal", "")), refusal=True)
    return _text(json.dumps(part))


def _slots(message: ChatMessage) -> dict[str, list[_Json]]:
    slots: dict[str, list[_Json]] = {"text": [], "image": [], "part": [], "refusal": [], "call": []}
    if message.role == "tool":
        slots["result"] = [_result(str(message.tool_call_id), message.text)]
        return slots
    if isinstance(message.content, str):
        slots["text"].append(_text(message.content))
    else:
        for part in message.content:
            kind = part.get("type")
            if kind == "text":
                slots["text"].append(_text(str(part.get("text", ""))))
            elif kind == "image_url" and isinstance(part.get("image_url"), Mapping):
                url = part["image_url"].get("url", "")  # type: ignore[union-attr]
                slots["image"].append(_image(str(url)))
            else:
                slots["part"].append(_part_content(part))
    if message.refusal is not None:
        slots["refusal"].append(_text(message.refusal, refusal=True))
    return slots


def _contents(message: ChatMessage, layout: object) -> list[_Json]:
    slots = _slots(message)
    calls = list(message.tool_calls)
    entries: list[Any] = (
        layout if isinstance(layout, list) else [{"k": k} for k in _default_kinds(message)]
    )
    out: list[_Json] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _LayoutMismatch
        kind = entry.get("k")
        if kind == "raw":
            out.append(dict(entry["c"]))
            continue
        if kind == "call":
            if not calls:
                raise _LayoutMismatch
            content = _call(calls.pop(0), as_object=bool(entry.get("obj")))
        else:
            queue = slots.get(str(kind))
            if not queue:
                raise _LayoutMismatch
            content = queue.pop(0)
        content.update(entry.get("set") or {})
        for key in entry.get("unset") or ():
            content.pop(key, None)
        out.append(content)
    return out


def _meta(message: ChatMessage) -> _Json:
    meta = message.metadata.get(METADATA_KEY)
    if isinstance(meta, dict) and meta.get("v") == _FORMAT:
        return meta
    return {}


def _rebuild(group: list[ChatMessage]) -> Message:
    head = _meta(group[0])
    contents: list[_Json] = []
    for message in group:
        meta = _meta(message)
        try:
            contents += _contents(message, meta.get("contents"))
        except (_LayoutMismatch, KeyError, TypeError, ValueError):
            logger.warning(
                "message %r: its stored Agent Framework layout does not match its fields; "
                "rebuilding it from the memweave fields alone",
                message.id,
            )
            contents += _contents(message, None)
    first = group[0]
    author = head.get("author_name", first.name)
    data: _Json = {
        **(head.get("extra") or {}),
        "type": "message",
        "role": head.get("role", first.role),
        "contents": contents,
        "message_id": head.get("message_id", first.id),
        "additional_properties": head.get("additional_properties") or {},
    }
    if author is not None:
        data["author_name"] = author
    return Message.from_dict(data)


def messages_from_memweave(messages: Sequence[ChatMessage]) -> list[Message]:
    """Convert memweave messages to Agent Framework messages.

    Messages written by `messages_to_memweave` come back exactly as they were given
    (`to_dict()` equal); any other memweave message is mapped from its own fields: text and
    content parts, name, tool calls and tool results, and its id as `message_id`.

    Args:
        messages: memweave messages, oldest first.

    Returns:
        The Agent Framework messages, oldest first; the tool messages one AF message was split
        into are merged back into it.
    """
    out: list[Message] = []
    group: list[ChatMessage] = []
    for message in messages:
        meta = _meta(message)
        part = meta.get("part")
        if group and isinstance(part, list) and part and part[0] > 0:
            previous = _meta(group[-1])
            if previous.get("message_id") == meta.get("message_id") and previous.get("part", [0])[
                0
            ] == (part[0] - 1):
                group.append(message)
                continue
        if group:
            out.append(_rebuild(group))
        group = [message]
    if group:
        out.append(_rebuild(group))
    return out
