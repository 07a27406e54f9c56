"""Between LangGraph's objects and the stored forms of `_records`: checking configs and ids,
splitting a checkpoint into its JSON document and blobs, and decoding it back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memweave.errors import InvalidArgument, MissingDependency
from memweave.integrations.langgraph._records import (
    DOCUMENT_VERSION,
    Blob,
    CorruptCheckpoint,
    Head,
    NewCheckpoint,
    Write,
    blob_key,
    check_name,
    decode_document,
    decode_metadata,
    encode_json,
    inline,
)

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_serializable_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("langgraph", "langgraph") from exc

__all__ = [
    "MAX_ID",
    "configurable",
    "decode_tuple",
    "encode_checkpoint",
    "encode_writes",
    "ids",
    "matches",
    "read_id",
    "safe_serializer",
    "write_id",
]

MAX_ID = 256
"""Most characters of a checkpoint or task id (the SQL key columns hold 256)."""

_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")


def safe_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer in its safe mode: no pickle, and msgpack rebuilds only the types
    on LangGraph's built-in allowlist (plus what a compiled graph's state schema adds through
    `with_allowlist`); nothing else is imported or called on load."""
    return JsonPlusSerializer(
        pickle_fallback=False, allowed_json_modules=None, allowed_msgpack_modules=None
    )


def configurable(config: object) -> dict[str, Any]:
    """`config["configurable"]`, which must name a thread.

    Raises:
        InvalidArgument: It does not.
    """
    conf = config.get("configurable") if isinstance(config, Mapping) else None
    if not isinstance(conf, dict) or conf.get("thread_id") is None:
        raise InvalidArgument("config", config, "needs config['configurable']['thread_id']")
    return conf


def read_id(value: object) -> str | None:
    """A checkpoint id from a read's config: None when absent, `""` when it cannot name a
    stored checkpoint (so the read finds nothing)."""
    if not value:
        return None
    if not isinstance(value, str) or len(value) > MAX_ID or "\x00" in value:
        return ""
    return value


def write_id(name: str, value: object) -> str:
    """A checkpoint or task id about to be stored.

    Raises:
        InvalidArgument: It is not a storable str of at most `MAX_ID` characters.
    """
    text = check_name(name, value)
    if len(text) > MAX_ID:
        raise InvalidArgument(name, value, f"is {len(text)} characters; at most {MAX_ID}")
    return text


def ids(name: str, values: object) -> list[str]:
    """Thread or run ids of a call taking several, without repeats.

    Raises:
        InvalidArgument: `values` is a single str (a common slip) or not a collection.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
        raise InvalidArgument(name, values, "must be a sequence of ids, not a single value")
    return list(dict.fromkeys(check_name(name, v, coerce=True) for v in values))


def matches(head: Head, wanted: Mapping[str, Any]) -> bool:
    """Whether the head's metadata holds every key of `wanted` with an equal value."""
    metadata = decode_metadata(head)
    return all(key in metadata and metadata[key] == value for key, value in wanted.items())


def _type(type_: object) -> str:
    if not isinstance(type_, str) or not 0 < len(type_) <= 64 or "\n" in type_:
        raise InvalidArgument("serde", type_, "returned a type name that is not 1-64 characters")
    return type_


def encode_checkpoint(
    serde: SerializerProtocol,
    config: RunnableConfig,
    where: tuple[str, str, str | None],
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> NewCheckpoint:
    """Split a checkpoint into its JSON document and the blobs of its new channel versions.

    Values that are JSON scalars stay in the document; any other value is a blob keyed by
    its channel and version, written only when `new_versions` names the channel (an older
    version is stored already). A value of a channel without a version cannot be keyed and is
    left out, as LangGraph's own savers do.

    Args:
        serde: The saver's serializer.
        config: The put's config (its metadata and configurable values join `metadata`).
        where: Thread id, namespace and parent checkpoint id.
        checkpoint: The checkpoint.
        metadata: Its metadata.
        new_versions: The channels written since the parent.

    Raises:
        InvalidArgument: The document or metadata holds what JSON cannot.
    """
    thread_id, ns, parent = where
    values: dict[str, Any] = checkpoint.get("channel_values") or {}
    versions: ChannelVersions = checkpoint.get("channel_versions") or {}
    kept: dict[str, Any] = {}
    channels: list[str] = []
    refs: list[str] = []
    blobs: list[Blob] = []
    for channel, value in values.items():
        if inline(value):
            kept[channel] = value
            continue
        version = versions.get(channel)
        if version is None:
            continue
        key = blob_key(channel, version)
        channels.append(channel)
        refs.append(key)
        if channel in new_versions:
            type_, data = serde.dumps_typed(value)
            blobs.append(Blob(key, _type(type_), data))
    body: dict[str, Any] = {k: v for k, v in checkpoint.items() if k != "channel_values"}
    body["channel_values"] = kept
    document = encode_json(
        "checkpoint", {"v": DOCUMENT_VERSION, "checkpoint": body, "blobs": channels}
    )
    meta = get_serializable_checkpoint_metadata(config, metadata)
    run_id = meta.get("run_id")
    head = Head(
        thread_id,
        ns,
        checkpoint["id"],
        parent,
        document,
        encode_json("metadata", meta),
        tuple(refs),
    )
    return NewCheckpoint(
        head,
        blobs,
        None if run_id is None else check_name("run_id", str(run_id)),
        any(key in meta for key in _DELTA_KEYS),
    )


def encode_writes(
    serde: SerializerProtocol, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
) -> list[Write]:
    """A task's writes as stored: the `i`-th under index `i`, a special channel
    (`WRITES_IDX_MAP`) under its fixed negative index.

    Raises:
        InvalidArgument: A channel name cannot be stored.
    """
    rows = []
    for idx, (channel, value) in enumerate(writes):
        type_, data = serde.dumps_typed(value)
        name = check_name("channel", channel)
        rows.append(
            Write(task_id, WRITES_IDX_MAP.get(name, idx), name, _type(type_), data, task_path)
        )
    return rows


def decode_tuple(serde: SerializerProtocol, head: Head) -> CheckpointTuple:
    """Decode a stored checkpoint, with its writes and blobs, into a `CheckpointTuple`
    (pending writes in `writes_sort_key` order).

    Raises:
        CorruptCheckpoint: Its document, metadata, a value or a write cannot be decoded.
        SchemaMismatch: Its document was written in another version.
    """
    document = decode_document(head)
    checkpoint = document["checkpoint"]
    values = checkpoint["channel_values"]
    versions = checkpoint["channel_versions"]
    for channel in document["blobs"]:
        blob = head.blobs.get(blob_key(channel, versions.get(channel)))
        if blob is not None and blob.data is not None and blob.type != "empty":
            values[channel] = _load(serde, head, blob.type, blob.data, f"channel {channel!r}")
    # LangGraph's `writes_sort_key`: the order a super-step's writes were applied in.
    writes = sorted(head.writes, key=lambda w: (w.task_path, w.task_id, w.idx))
    pending = [
        (w.task_id, w.channel, _load(serde, head, w.type, w.data, f"write {w.task_id!r}"))
        for w in writes
    ]
    where = {"thread_id": head.thread_id, "checkpoint_ns": head.checkpoint_ns}
    parent = {"configurable": {**where, "checkpoint_id": head.parent_id}}
    return CheckpointTuple(
        config={"configurable": {**where, "checkpoint_id": head.checkpoint_id}},
        checkpoint=checkpoint,
        metadata=decode_metadata(head),  # type: ignore[arg-type]
        parent_config=parent if head.parent_id else None,  # type: ignore[arg-type]
        pending_writes=pending,
    )


def _load(serde: SerializerProtocol, head: Head, type_: str, data: bytes, what: str) -> Any:
    try:
        return serde.loads_typed((type_, data))
    except Exception as exc:  # any failure of the serializer means the stored bytes are bad
        raise CorruptCheckpoint(
            head.thread_id,
            head.checkpoint_ns,
            head.checkpoint_id,
            f"{what} of type {type_!r} cannot be decoded: {type(exc).__name__}: {exc}",
        ) from exc
