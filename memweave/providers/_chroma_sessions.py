"""Record ids and session records of the Chroma history: their layout, the id ranks that
`list_sessions` filters on, listing, and the `prune` and `purge_expired` sweeps."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from memweave.providers.base import BATCH_SIZE

__all__ = [
    "MESSAGE",
    "PAGE",
    "SEQ_LIMIT",
    "SESSION",
    "alive",
    "as_time",
    "get_all",
    "list_sessions",
    "listing_fields",
    "message_key",
    "prune_step",
    "purge_step",
    "seq_base",
    "session_key",
    "session_meta",
    "stamp_unrecorded",
]

MESSAGE = "message"
"""`kind` of a message record."""
SESSION = "session"
"""`kind` of a session's own record."""
PAGE = 5_000
"""Records per `collection.get` when reading everything that matches."""

_LEVELS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""Prefix lengths (in characters) stored on session records, one field each (`p1`, `p2`...)."""
_INDEXED = "indexed"
"""Set on session records that carry `updated` and the prefix fields. Records without it were
stored by an older memweave: collections made by one are scanned for them apart (with `$ne`,
which matches a missing key) until `prune` has given them both."""
SEQ_LIMIT = 2**32
"""Sequence numbers stay below this, so `seq_base(session) + seq` stays in the session's block."""


def _hash(*parts: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def message_key(session_id: str, message_id: str) -> str:
    """The record id of a message: ids are per session, and any characters are safe."""
    return "m" + _hash(session_id, message_id)


def session_key(session_id: str) -> str:
    """The record id of a session's own record."""
    return "s" + _hash(session_id)


def seq_base(session_id: str) -> int:
    """The start of the session's block of `key` values: a message's `key` is this plus its
    sequence number, so a window of a session's messages is one `$in` lookup (Chroma answers
    `$in` from its index, while a `$gte`/`$lte` range costs the whole collection). Other
    sessions rarely share a block; their records are filtered out by `sid`."""
    return (int(_hash("seq", session_id)[:8], 16) & 0x7FFF_FFFF) * SEQ_LIMIT


def get_all(collection: Any, where: Any, include: list[str]) -> dict[str, list[Any]]:
    """`collection.get` in pages, merged, so a long session is not one huge response."""
    merged: dict[str, list[Any]] = {"ids": [], "metadatas": [], "documents": []}
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=PAGE, offset=offset)
        merged["ids"].extend(page["ids"])
        for field in ("metadatas", "documents"):
            if page.get(field) is not None:
                merged[field].extend(page[field])
        if len(page["ids"]) < PAGE:
            return merged
        offset += PAGE


def alive(meta: dict[str, Any] | None, now: float) -> bool:
    """Whether this session record exists and has not expired at `now`."""
    if meta is None:
        return False
    expires = float(meta.get("expires", 0) or 0)
    return expires == 0 or expires > now


def _alive_clause(now: float) -> Any:
    return {"$or": [{"expires": {"$eq": 0.0}}, {"expires": {"$gt": now}}]}


def as_time(value: Any) -> datetime | None:
    """A stored epoch time as an aware UTC datetime; None when not recorded."""
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def session_meta(
    session_id: str,
    *,
    expires: float,
    head: int,
    low: int,
    created: float | None,
    updated: float | None,
    keyed: bool = False,
) -> dict[str, Any]:
    """A session record's metadata: expiry (0 for none), the lowest and highest sequence
    numbers written (where paged reads start), and the times. A time not known is left out;
    the listing fields go with `updated`. `keyed` says every message record of the session
    has its `key` (left out, an upsert keeps what the record held)."""
    meta: dict[str, Any] = {
        "kind": SESSION,
        "sid": session_id,
        "expires": expires,
        "head": head,
        "low": low,
    }
    if created is not None:
        meta["created"] = created
    if updated is not None:
        meta.update(updated=updated, **listing_fields(session_id))
    if keyed:
        meta["keyed"] = True
    return meta


def listing_fields(session_id: str) -> dict[str, Any]:
    """The fields `list_sessions` looks sessions up by: the id's prefixes of `_LEVELS`."""
    return {_INDEXED: True, **{f"p{level}": session_id[:level] for level in _LEVELS}}


def list_sessions(
    collection: Any, prefix: str | None, after: str | None, limit: int | None, *, legacy: bool
) -> list[str]:
    """Live session ids starting with `prefix`, after `after`; with `limit`, the smallest
    `limit` of them and maybe more (the caller sorts and cuts).

    Chroma returns matches in storage order and compares strings only for equality, so ids
    are looked up by equal prefixes. The ids after `after` that share its first `n`
    characters come before every other id after it; so the lookup starts at the longest
    stored prefix of `after` and widens until one group holds `limit` ids after it, costing
    about that group. With `legacy`, session records stored without the prefix fields are
    read too (a scan of the collection).
    """
    now = time.time()
    if prefix is not None and after is not None and after >= prefix:
        if not after.startswith(prefix):
            return []  # every id with the prefix sorts before `after`
    elif prefix is not None:
        after = None  # `after` sorts before every id with the prefix

    def take(where: Any) -> list[str]:
        out = []
        for meta in get_all(collection, where, ["metadatas"])["metadatas"]:
            session_id = str(meta.get("sid", ""))
            if (
                (prefix is None or session_id.startswith(prefix))
                and (after is None or session_id > after)
                and alive(meta, now)
            ):
                out.append(session_id)
        return out

    ids: set[str] = set()
    if legacy:
        ids.update(take({"$and": [{"kind": {"$eq": SESSION}}, {_INDEXED: {"$ne": True}}]}))
    floor = len(prefix) if prefix is not None else 1
    if after is not None and limit is not None:
        for level in reversed(_LEVELS):
            if floor <= level <= len(after):
                found = take({f"p{level}": {"$eq": after[:level]}})
                if len(found) >= limit:
                    return sorted(ids.union(found))
    widest = [level for level in _LEVELS if level <= floor] if prefix is not None else []
    if widest:
        where: Any = {f"p{widest[-1]}": {"$eq": str(prefix)[: widest[-1]]}}
    else:
        where = {"kind": {"$eq": SESSION}}
    return sorted(ids.union(take(where)))


def _delete_sessions(collection: Any, session_ids: Sequence[str], heads: dict[str, int]) -> None:
    collection.delete(where={"sid": {"$in": list(session_ids)}})
    for session_id in session_ids:
        heads.pop(session_id, None)


def stamp_unrecorded(collection: Any) -> int:
    """Give up to `BATCH_SIZE` session records stored without `updated` the time now (and
    the listing fields); return how many."""
    where = {"$and": [{"kind": {"$eq": SESSION}}, {_INDEXED: {"$ne": True}}]}
    got = collection.get(where=where, include=["metadatas"], limit=BATCH_SIZE)
    if got["ids"]:
        now = time.time()
        collection.update(
            ids=got["ids"],
            metadatas=[
                session_meta(
                    str(meta.get("sid", "")),
                    expires=float(meta.get("expires", 0) or 0),
                    head=int(meta.get("head", 0) or 0),
                    low=int(meta.get("low", 0) or 0),
                    created=meta.get("created"),
                    updated=now,
                )
                for meta in got["metadatas"]
            ],
        )
    return len(got["ids"])


def prune_step(
    collection: Any, heads: dict[str, int], older_than: timedelta, dry_run: bool, offset: int
) -> tuple[int, bool]:
    """Delete (or with `dry_run` count, from `offset`) up to `BATCH_SIZE` live sessions last
    updated more than `older_than` ago; return how many and whether more may follow."""
    now = time.time()
    where = {
        "$and": [
            {"kind": {"$eq": SESSION}},
            {_INDEXED: {"$eq": True}},
            {"updated": {"$lt": now - older_than.total_seconds()}},
            _alive_clause(now),
        ]
    }
    got = collection.get(
        where=where, include=["metadatas"], limit=BATCH_SIZE, offset=offset if dry_run else 0
    )
    session_ids = [str(meta.get("sid", "")) for meta in got["metadatas"]]
    if session_ids and not dry_run:
        _delete_sessions(collection, session_ids, heads)
    return len(session_ids), len(session_ids) == BATCH_SIZE


def purge_step(collection: Any, heads: dict[str, int]) -> tuple[int, bool]:
    """Delete every record of up to `BATCH_SIZE` expired sessions; return how many sessions
    and whether more may follow."""
    where = {
        "$and": [
            {"kind": {"$eq": SESSION}},
            {"expires": {"$gt": 0.0}},
            {"expires": {"$lte": time.time()}},
        ]
    }
    got = collection.get(where=where, include=["metadatas"], limit=BATCH_SIZE)
    session_ids = [str(meta.get("sid", "")) for meta in got["metadatas"]]
    if session_ids:
        _delete_sessions(collection, session_ids, heads)
    return len(session_ids), len(session_ids) == BATCH_SIZE
