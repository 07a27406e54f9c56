"""JSON for Agent Framework workflow checkpoints, without pickle.

Agent Framework's own file storage pickles every value that is not JSON. This codec writes
JSON only and rebuilds objects through the framework's own serialization: an object with
`to_dict()` / `from_dict()` (`Message`, `Content`, `AgentResponse`, `WorkflowMessage`, ...)
is stored as its `to_dict()`; a dataclass (`AgentExecutorRequest`, `HandoffAgentUserRequest`,
...) field by field; a pydantic model as its `model_dump()`; an enum by value; a
request-info `WorkflowEvent` by its fields. Values that are not JSON-native carry a
`{"$mw": <kind>, ...}` tag; a dict that has a `"$mw"` key or non-str keys is stored as pairs.

Safe mode: reading builds only classes on an allowlist, the one Agent Framework's restricted
unpickler uses: types of `agent_framework`, `agent_framework_orchestrations` and
`openai.types`, types registered with `agent_framework.register_checkpoint_type`, and the
`allowed_types` given. A stored type name outside it is refused before anything is imported,
metaclasses are never built, and only a class's own constructor or `from_dict` /
`model_validate` runs. A value the codec cannot store is refused when saving, naming where
it was, rather than when a workflow tries to resume.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import math
import sys
import types
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

__all__ = ["CheckpointCodec", "DecodeError", "EncodeError", "type_key"]

_TAG = "$mw"
_PREFIXES = ("agent_framework.", "agent_framework_orchestrations.", "openai.types.")
_MODULES = ("agent_framework", "agent_framework_orchestrations")
_BUILTIN_TYPES: dict[str, type] = {
    f"builtins:{t.__qualname__}": t
    for t in (str, int, float, bool, bytes, list, dict, tuple, set, frozenset, type(None))
}


class EncodeError(Exception):
    """A value cannot be stored; `path` says where in the checkpoint it sits."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"at {path}: {reason}")


class DecodeError(Exception):
    """A stored value cannot be rebuilt; `path` says where in the checkpoint it sits."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"at {path}: {reason}")


def type_key(cls: type) -> str:
    """`module:qualname`, the name Agent Framework's allowlists use."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _registered() -> frozenset[str]:
    """Types registered with `agent_framework.register_checkpoint_type`."""
    try:
        from agent_framework._workflows import _checkpoint_encoding
    except ImportError:  # pragma: no cover - a framework version without the registry
        return frozenset()
    return frozenset(getattr(_checkpoint_encoding, "_REGISTERED_CHECKPOINT_TYPE_KEYS", ()))


def _has_dict_methods(cls: type) -> bool:
    return callable(getattr(cls, "to_dict", None)) and callable(getattr(cls, "from_dict", None))


class CheckpointCodec:
    """Encodes checkpoint values to JSON and back, building allowlisted classes only.

    Args:
        allowed_types: Further classes that may be stored and rebuilt, as classes or
            `"module:qualname"` strings.
    """

    def __init__(self, allowed_types: Iterable[str | type] = ()) -> None:
        given = list(allowed_types)
        self._classes = {type_key(t): t for t in given if isinstance(t, type)}
        """Classes given as objects: found by name even where an import would not find them."""
        self._extra = frozenset(t if isinstance(t, str) else type_key(t) for t in given)

    def allowed(self, key: str) -> bool:
        """Whether a class named `module:qualname` may be stored and rebuilt."""
        module = key.partition(":")[0]
        return (
            key in self._extra
            or key in _registered()
            or module in _MODULES
            or module.startswith(_PREFIXES)
        )

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, value: Any, path: str = "$") -> Any:
        """Return `value` as JSON-ready data.

        Raises:
            EncodeError: A value of a type the codec cannot store or may not rebuild.
        """
        if value is None or type(value) in (str, bool, int):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
        if type(value) is list:
            return [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if type(value) is dict:
            if _TAG not in value and all(type(k) is str for k in value):
                return {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}
            pairs = [
                [self.encode(k, f"{path}<key>"), self.encode(v, f"{path}[{k!r}]")]
                for k, v in value.items()
            ]
            return {_TAG: "dict", "items": pairs}
        if isinstance(value, type | types.GenericAlias):
            return {_TAG: "type", "type": self._encode_type(value, path)}
        simple = self._encode_simple(value, path)
        if simple is not None:
            return simple
        return self._encode_object(value, path)

    def _encode_simple(self, value: Any, path: str) -> dict[str, Any] | None:
        kind = type(value)
        if kind in (tuple, set, frozenset):
            name = kind.__name__
            return {
                _TAG: name,
                "items": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)],
            }
        if kind is bytes:
            return {_TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
        if kind is dt.datetime:
            return {_TAG: "datetime", "iso": value.isoformat()}
        if kind is dt.date:
            return {_TAG: "date", "iso": value.isoformat()}
        if kind is dt.time:
            return {_TAG: "time", "iso": value.isoformat()}
        if kind is dt.timedelta:
            return {_TAG: "timedelta", "s": value.total_seconds()}
        if kind is uuid.UUID:
            return {_TAG: "uuid", "hex": value.hex}
        if kind is Decimal:
            return {_TAG: "decimal", "s": str(value)}
        return None

    def _encode_object(self, value: Any, path: str) -> dict[str, Any]:
        cls = type(value)
        key = type_key(cls)
        if not self.allowed(key):
            raise EncodeError(
                path,
                f"a {key} is not JSON and not on the allowlist; make it a dataclass or pydantic "
                "model and register it (agent_framework.register_checkpoint_type, or "
                "allowed_checkpoint_types=)",
            )
        try:
            found = self._resolve(key, path)
        except DecodeError as exc:
            raise EncodeError(path, f"could not be rebuilt: {exc.reason}") from None
        if found is not cls:
            raise EncodeError(path, f"the name {key} finds another class than the value's")
        from agent_framework import WorkflowEvent

        if isinstance(value, WorkflowEvent):
            if value.type != "request_info":
                raise EncodeError(path, f"a {value.type!r} event (only request_info is stored)")
            return {
                _TAG: "event",
                "data": self.encode(value.data, f"{path}.data"),
                "request_id": value.request_id,
                "source_executor_id": value.source_executor_id,
                "request_type": self._encode_type(value.request_type, f"{path}.request_type"),
                "response_type": self._encode_type(value.response_type, f"{path}.response_type"),
            }
        if isinstance(value, enum.Enum):
            return {_TAG: "enum", "type": key, "value": self.encode(value.value, path)}
        if isinstance(value, BaseModel):
            data = value.model_dump(mode="python")
            return {_TAG: "model", "type": key, "data": self.encode(data, path)}
        if _has_dict_methods(cls):
            return {_TAG: "obj", "type": key, "data": self.encode(value.to_dict(), path)}
        if dataclasses.is_dataclass(value):
            fields = {
                field.name: self.encode(getattr(value, field.name), f"{path}.{field.name}")
                for field in dataclasses.fields(value)
            }
            return {_TAG: "dataclass", "type": key, "fields": fields}
        raise EncodeError(path, f"a {key} has no to_dict()/from_dict() and is no dataclass")

    def _encode_type(self, value: Any, path: str) -> Any:
        if isinstance(value, types.GenericAlias):
            return {
                "origin": self._encode_type(value.__origin__, path),
                "args": [self._encode_type(arg, path) for arg in value.__args__],
            }
        if not isinstance(value, type):
            raise EncodeError(path, f"{value!r} is not a class")
        key = type_key(value)
        if key not in _BUILTIN_TYPES and not self.allowed(key):
            raise EncodeError(path, f"the type {key} is not on the allowlist")
        return key

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, data: Any, path: str = "$") -> Any:
        """Rebuild a value written by `encode`.

        Raises:
            DecodeError: The data is malformed, or names a type outside the allowlist.
        """
        if data is None or isinstance(data, str | bool | int | float):
            return data
        if isinstance(data, list):
            return [self.decode(item, f"{path}[{i}]") for i, item in enumerate(data)]
        if not isinstance(data, dict):
            raise DecodeError(path, f"unexpected {type(data).__name__}")
        tag = data.get(_TAG)
        if tag is None:
            return {k: self.decode(v, f"{path}.{k}") for k, v in data.items()}
        try:
            return self._decode_tagged(str(tag), data, path)
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(
                path, f"cannot rebuild a {tag!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def _decode_tagged(self, tag: str, data: dict[str, Any], path: str) -> Any:
        def items() -> list[Any]:
            return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(data["items"])]

        simple: dict[str, Any] = {
            "float": lambda: float(data["v"]),
            "dict": lambda: {
                self.decode(k, path): self.decode(v, f"{path}[{k!r}]") for k, v in data["items"]
            },
            "tuple": lambda: tuple(items()),
            "set": lambda: set(items()),
            "frozenset": lambda: frozenset(items()),
            "bytes": lambda: base64.b64decode(data["b64"], validate=True),
            "datetime": lambda: dt.datetime.fromisoformat(data["iso"]),
            "date": lambda: dt.date.fromisoformat(data["iso"]),
            "time": lambda: dt.time.fromisoformat(data["iso"]),
            "timedelta": lambda: dt.timedelta(seconds=data["s"]),
            "uuid": lambda: uuid.UUID(hex=data["hex"]),
            "decimal": lambda: Decimal(data["s"]),
            "type": lambda: self._decode_type(data["type"], path),
        }
        if tag in simple:
            return simple[tag]()
        if tag == "event":
            from agent_framework import WorkflowEvent

            return WorkflowEvent.request_info(
                request_id=str(data["request_id"]),
                source_executor_id=str(data["source_executor_id"]),
                request_data=self.decode(data["data"], f"{path}.data"),
                response_type=self._decode_type(data["response_type"], path),
            )
        cls = self._resolve(str(data["type"]), path)
        if tag == "enum":
            if not issubclass(cls, enum.Enum):
                raise DecodeError(path, f"{data['type']} is not an enum")
            return cls(self.decode(data["value"], path))
        if tag == "model":
            if not issubclass(cls, BaseModel):
                raise DecodeError(path, f"{data['type']} is not a pydantic model")
            return cls.model_validate(self.decode(data["data"], path))
        if tag == "obj":
            if not _has_dict_methods(cls):
                raise DecodeError(path, f"{data['type']} has no from_dict()")
            return cls.from_dict(self.decode(data["data"], path))  # type: ignore[attr-defined]
        if tag == "dataclass":
            return self._decode_dataclass(cls, data["fields"], path)
        raise DecodeError(path, f"unknown tag {tag!r}")

    def _decode_dataclass(self, cls: type, stored: dict[str, Any], path: str) -> Any:
        if not dataclasses.is_dataclass(cls):
            raise DecodeError(path, f"{type_key(cls)} is not a dataclass")
        values = {name: self.decode(value, f"{path}.{name}") for name, value in stored.items()}
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = set(values) - set(fields)
        if unknown:
            raise DecodeError(path, f"{type_key(cls)} has no field {sorted(unknown)[0]!r}")
        made = cls(**{name: v for name, v in values.items() if fields[name].init})
        for name, value in values.items():
            if not fields[name].init:
                object.__setattr__(made, name, value)
        return made

    def _decode_type(self, stored: Any, path: str) -> Any:
        if isinstance(stored, dict):
            origin = self._decode_type(stored["origin"], path)
            args = tuple(self._decode_type(arg, path) for arg in stored["args"])
            return types.GenericAlias(origin, args)
        if not isinstance(stored, str):
            raise DecodeError(path, f"not a type name: {stored!r}")
        return _BUILTIN_TYPES.get(stored) or self._resolve(stored, path)

    def _resolve(self, key: str, path: str) -> type:
        """The allowlisted class named `module:qualname`; its module is imported only after
        the name passed the allowlist."""
        if not self.allowed(key):
            raise DecodeError(path, f"the type {key} is not on the allowlist")
        if key in self._classes:
            return self._classes[key]
        module_name, _, qualname = key.partition(":")
        module = sys.modules.get(module_name)
        try:
            if module is None:
                module = importlib.import_module(module_name)
            found: Any = module
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise DecodeError(path, f"the type {key} cannot be found: {exc}") from exc
        if not isinstance(found, type) or issubclass(found, type):
            raise DecodeError(path, f"{key} is not a class that may be built")
        return found
