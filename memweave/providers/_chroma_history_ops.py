"""The blocking Chroma calls of `ChromaChatHistoryProvider` on message records: appends,
reads by sequence windows, edits and search. They run on the provider's one worker thread,
so the provider's own calls never interleave."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from memweave.providers._chroma_client import DEFAULT_MAX_BATCH
from memweave.providers._chroma_sessions import (
    MESSAGE,
    SESSION,
    alive,
    as_time,
    get_all,
    listing_fields,
    message_key,
    seq_base,
    session_key,
    session_meta,
)
from memweave.providers.base import DeleteOutcome, SessionInfo, StoredRecord, trim_count

__all__ = ["HistoryOps", "Row", "text_of"]

_PROBE = 64
"""Sequence numbers past the highest known that must hold no row before a read stops."""
_IN_MAX = 4_096
"""Values per `$in` lookup."""

Row = tuple[int, str, str, dict[str, Any], Any]
"""A message record as `(seq, tie, record id, metadata, document)`; sorted, they are in order."""


def text_of(data: bytes) -> str:
    """The text of a stored entry, for its vector; "" when it has none or is not ours."""
    try:
        content = json.loads(data)["m"].get("content", "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _row(key: str, meta: dict[str, Any], document: Any) -> Row:
    return (int(meta["seq"]), str(meta.get("tie", "")), key, meta, document)


class HistoryOps:
    """The provider's blocking operations on its collection.

    Args:
        writer: This provider's tie-breaker, stored on its messages (equal sequence numbers
            from racing processes are ordered by it).
        blank: Returns the vector of a record with no text.
    """

    def __init__(self, writer: str, blank: Callable[[], list[float]]) -> None:
        self.writer = writer
        self.blank = blank
        self.heads: dict[str, int] = {}
        """The highest sequence number this provider has seen per session."""
        self.max_batch = DEFAULT_MAX_BATCH
        """Most records one Chroma write takes (the client's `get_max_batch_size()`)."""

    def _write(
        self,
        collection: Any,
        ids: list[str],
        embeddings: list[Any],
        documents: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """Upsert the records in order, in calls of at most `max_batch`: the session record,
        last, goes with the last call, so a batch cut short leaves the session's head where it
        was and the messages written above it are found by the next append (as another
        process's would be)."""
        step = max(1, self.max_batch)
        for at in range(0, len(ids), step):
            collection.upsert(
                ids=ids[at : at + step],
                embeddings=embeddings[at : at + step],
                documents=documents[at : at + step],
                metadatas=metadatas[at : at + step],
            )

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def where(session_id: str, kind: str | None = None) -> Any:
        # Session ids are values under an explicit `$eq`: never operators or patterns.
        if kind is None:
            return {"sid": {"$eq": session_id}}
        return {"$and": [{"sid": {"$eq": session_id}}, {"kind": {"$eq": kind}}]}

    def session(self, collection: Any, session_id: str) -> dict[str, Any] | None:
        """The live session's own record, or None when it does not exist or has expired."""
        got = collection.get(ids=[session_key(session_id)], include=["metadatas"])
        meta = dict(got["metadatas"][0]) if got["ids"] else None
        return meta if alive(meta, time.time()) else None

    def state(
        self, collection: Any, session_id: str, *, documents: bool = True
    ) -> tuple[list[Row], dict[str, Any] | None]:
        """The live session's message records, in order, and its own record; `([], None)`
        when the session does not exist or has expired."""
        include = ["metadatas", "documents"] if documents else ["metadatas"]
        got = get_all(collection, self.where(session_id), include)
        documents_of = got["documents"] if documents else [None] * len(got["ids"])
        session: dict[str, Any] | None = None
        rows = []
        for key, meta, document in zip(got["ids"], got["metadatas"], documents_of, strict=True):
            if meta.get("kind") == SESSION:
                session = dict(meta)
            else:
                rows.append(_row(key, meta, document))
        if not alive(session, time.time()):
            return [], None
        rows.sort(key=lambda row: row[:3])
        return rows, session

    def _window(
        self,
        collection: Any,
        session_id: str,
        keyed: bool,
        lowest: int | None,
        highest: int | None,
    ) -> list[Row]:
        """The session's rows with sequence numbers in `[lowest, highest]`.

        A keyed session is looked up by `key` with `$in` (bounds required); a session stored
        by an older memweave by `sid` and a `seq` range (either end open when None), which
        costs Chroma the whole collection."""
        if keyed and lowest is not None and highest is not None:
            base = seq_base(session_id)
            values = range(base + max(lowest, 0), base + highest + 1)
            wheres: list[Any] = [
                {"key": {"$in": list(values[i : i + _IN_MAX])}}
                for i in range(0, len(values), _IN_MAX)
            ]
        else:
            clauses: list[Any] = [{"sid": {"$eq": session_id}}, {"kind": {"$eq": MESSAGE}}]
            if lowest is not None:
                clauses.append({"seq": {"$gte": lowest}})
            if highest is not None:
                clauses.append({"seq": {"$lte": highest}})
            wheres = [{"$and": clauses}]
        rows = []
        for where in wheres:
            got = get_all(collection, where, ["metadatas", "documents"])
            for key, meta, document in zip(
                got["ids"], got["metadatas"], got["documents"], strict=True
            ):
                if meta.get("sid") == session_id and meta.get("kind") == MESSAGE:
                    rows.append(_row(key, meta, document))
        return rows

    def _above(self, collection: Any, session_id: str, head: int) -> list[Row]:
        """Rows numbered above `head` (written by writers racing this provider's last look).

        Appends number their messages right after a head they read, and the session record's
        head never moves down except when such appends race; so rows above it follow it
        without long gaps, and the first `_PROBE` numbers that hold none end the search."""
        rows: list[Row] = []
        while found := self._window(collection, session_id, True, head + 1, head + _PROBE):
            rows.extend(found)
            head += _PROBE
        return rows

    def _scan(
        self,
        collection: Any,
        session_id: str,
        session: dict[str, Any],
        *,
        near: int,
        up: bool,
        limit: int,
        open_near: bool = False,
        keep: Callable[[Row], bool] = lambda row: True,
    ) -> list[Row]:
        """Collect kept rows from sequence `near` towards newer (`up`) or older ones, one
        window of sequence numbers at a time, until `limit` are kept or the session ends that
        way; `open_near` also takes the rows on the near side of `near`. Sorted.

        Each window holds every row of its sequence numbers, ties included, and rows beyond
        it sort beyond them; so once `limit` are kept, the nearest `limit` kept rows of the
        session are among them. Windows start at twice `limit` and double, so gaps left by
        deletions cost a few more reads, not the session. Newer rows end `_PROBE` numbers
        past the highest one known; older ones at the session record's `low`.
        """
        keyed = bool(session.get("keyed"))
        low = int(session.get("low", 0) or 0)
        top = max(int(session.get("head", 0) or 0), self.heads.get(session_id, 0))
        rows: list[Row] = []
        if keyed and open_near and not up:
            rows.extend(row for row in self._above(collection, session_id, near) if keep(row))
        span = 2 * limit
        first = True
        while True:
            far = near + span - 1 if up else near - span + 1
            if keyed:
                bounds: tuple[int | None, int | None] = (near, far) if up else (far, near)
            else:
                near_bound = None if first and open_near else near
                ended = far >= top if up else far <= low
                far_bound = None if ended else far
                bounds = (near_bound, far_bound) if up else (far_bound, near_bound)
            window = self._window(collection, session_id, keyed, *bounds)
            rows.extend(row for row in window if keep(row))
            if keyed:
                top = max([top, *(row[0] for row in window)])
                ended = far >= top + _PROBE if up else far <= max(low, 1)
            if len(rows) >= limit or ended:
                return sorted(rows, key=lambda row: row[:3])
            near = far + 1 if up else far - 1
            span *= 2
            first = False

    def read(self, collection: Any, session_id: str, limit: int | None) -> list[bytes]:
        if limit is None:
            rows = self.state(collection, session_id)[0]
        else:
            session = self.session(collection, session_id)
            if session is None:
                return []
            head = max(int(session.get("head", 0) or 0), self.heads.get(session_id, 0))
            found = self._scan(
                collection, session_id, session, near=head, up=False, limit=limit, open_near=True
            )
            rows = found[-limit:]
        return [str(row[4]).encode("utf-8") for row in rows]

    def read_system(self, collection: Any, session_id: str) -> list[bytes]:
        session = self.session(collection, session_id)
        if session is None:
            return []
        where: Any = {
            "$and": [
                {"sid": {"$eq": session_id}},
                {"kind": {"$eq": MESSAGE}},
                {"role": {"$eq": "system"}},
            ]
        }
        if session.get("keyed"):
            where = {"sys": {"$eq": seq_base(session_id)}}
        got = get_all(collection, where, ["metadatas", "documents"])
        rows = sorted(
            (
                _row(key, meta, document)
                for key, meta, document in zip(
                    got["ids"], got["metadatas"], got["documents"], strict=True
                )
                if meta.get("sid") == session_id
            ),
            key=lambda row: row[:3],
        )
        return [str(row[4]).encode("utf-8") for row in rows]

    def read_page(
        self,
        collection: Any,
        session_id: str,
        after: str | None,
        before: str | None,
        limit: int,
    ) -> list[tuple[str, bytes]] | None:
        cursor = after if after is not None else before
        keys = [session_key(session_id)]
        if cursor is not None:
            keys.append(message_key(session_id, cursor))
        got = collection.get(ids=keys, include=["metadatas"])
        found = {key: dict(meta) for key, meta in zip(got["ids"], got["metadatas"], strict=True)}
        session = found.get(keys[0])
        if session is None or not alive(session, time.time()):
            return None if cursor is not None else []
        if cursor is None:
            low = int(session.get("low", 0) or 0)
            rows = self._scan(
                collection, session_id, session, near=low, up=True, limit=limit, open_near=True
            )[:limit]
        else:
            meta = found.get(keys[1])
            if meta is None or meta.get("kind") != MESSAGE:
                return None
            at = _row(keys[1], meta, None)[:3]
            if after is not None:
                rows = self._scan(
                    collection,
                    session_id,
                    session,
                    near=at[0],
                    up=True,
                    limit=limit,
                    keep=lambda row: row[:3] > at,
                )[:limit]
            else:
                rows = self._scan(
                    collection,
                    session_id,
                    session,
                    near=at[0],
                    up=False,
                    limit=limit,
                    keep=lambda row: row[:3] < at,
                )[-limit:]
        return [(str(row[3].get("mid")), str(row[4]).encode("utf-8")) for row in rows]

    def count(self, collection: Any, session_id: str) -> int:
        if self.session(collection, session_id) is None:
            return 0
        return self._count(collection, session_id)

    def _count(self, collection: Any, session_id: str) -> int:
        # By `sid` alone: a `kind` clause would cost Chroma every message of the collection.
        ids = get_all(collection, self.where(session_id), [])["ids"]
        return sum(1 for key in ids if key != session_key(session_id))

    def session_info(self, collection: Any, session_id: str) -> SessionInfo | None:
        session = self.session(collection, session_id)
        if session is None:
            return None
        count = self._count(collection, session_id)
        if not count:
            return None
        return SessionInfo(
            id=session_id,
            message_count=count,
            created_at=as_time(session.get("created")),
            updated_at=as_time(session.get("updated")),
        )

    # -- writing ------------------------------------------------------------------------------

    def message_meta(self, session_id: str, record: StoredRecord, seq: int) -> dict[str, Any]:
        base = seq_base(session_id)
        meta: dict[str, Any] = {
            "kind": MESSAGE,
            "sid": session_id,
            "seq": seq,
            "key": base + seq,
            "tie": self.writer,
            "role": record.role,
            "mid": record.id,
            "text": bool(text_of(record.data).strip()),
        }
        if record.role == "system":
            meta["sys"] = base  # system messages of a session, found by one equality
        return meta

    def append(
        self,
        collection: Any,
        session_id: str,
        records: Sequence[StoredRecord],
        vectors: Sequence[Sequence[float]],
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        keys = [session_key(session_id), *(message_key(session_id, r.id) for r in records)]
        seen = collection.get(ids=keys, include=["metadatas"])
        now = time.time()
        session: dict[str, Any] | None = None
        present: set[str] = set()
        for key, meta in zip(seen["ids"], seen["metadatas"], strict=True):
            if key == keys[0]:
                session = dict(meta)
            else:
                present.add(str(meta.get("mid")))
        if session is not None and not alive(session, now):
            collection.delete(where=self.where(session_id))
            session, present = None, set()
            self.heads.pop(session_id, None)
        head = max(self.heads.get(session_id, 0), int((session or {}).get("head", 0) or 0))
        if session is None or session.get("keyed"):
            above = self._above(collection, session_id, head)
        else:
            # Stored by an older memweave: its messages have no `key`.
            above = self._window(collection, session_id, False, head + 1, None)
        head = max([head, *(row[0] for row in above)])
        fresh = [(r, v) for r, v in zip(records, vectors, strict=True) if r.id not in present]
        if not fresh and session is None:
            return  # an empty batch (or only known ids) neither creates nor renews a session
        metadatas = [
            self.message_meta(session_id, r, head + n) for n, (r, _) in enumerate(fresh, 1)
        ]
        if session is None:
            created: float | None = now
            updated: float | None = now
            low = head + 1
        else:
            created = session.get("created")
            updated = now if fresh else session.get("updated")
            low = int(session.get("low", 0) or 0)
        head += len(fresh)
        record = session_meta(
            session_id,
            expires=now + ttl.total_seconds() if ttl is not None else 0.0,
            head=head,
            low=low,
            created=created,
            updated=updated,
            keyed=session is None,
        )
        # One call writes the batch and the session record together (a batch larger than
        # Chroma takes at once, in several). It is an upsert, so a message another process
        # stored since the read above is written again, same content.
        self._write(
            collection,
            ids=[*(message_key(session_id, r.id) for r, _ in fresh), session_key(session_id)],
            embeddings=[*(v for _, v in fresh), self.blank()],
            documents=[*(r.data.decode("utf-8") for r, _ in fresh), ""],
            metadatas=[*metadatas, record],
        )
        self.heads[session_id] = head
        if max_messages is not None:
            self._trim(collection, session_id, max_messages)

    def _trim(self, collection: Any, session_id: str, max_messages: int) -> None:
        rows, session = self.state(collection, session_id, documents=False)
        drop = trim_count([row[3].get("role", "") for row in rows], max_messages)
        if drop and session is not None:
            self._drop(collection, session_id, session, rows, rows[:drop], updated=None)

    def _drop(
        self,
        collection: Any,
        session_id: str,
        session: dict[str, Any],
        rows: Sequence[Row],
        doomed: Sequence[Row],
        *,
        updated: float | None,
    ) -> None:
        """Delete `doomed` (some of the session's `rows`, as read with its record `session`);
        delete the session record when none are left, else record the new lowest sequence
        number, a head no lower than any row's, and `updated` if given."""
        collection.delete(ids=[row[2] for row in doomed])
        gone = {row[2] for row in doomed}
        left = [row for row in rows if row[2] not in gone]
        if not left:
            collection.delete(ids=[session_key(session_id)])
            return
        # The head is put right here too: appends racing in other processes can leave it
        # below their rows, and reads stop a little past it.
        head = max(int(session.get("head", 0) or 0), rows[-1][0])
        meta: dict[str, Any] = {"low": left[0][0], "head": head}
        if updated is not None:
            meta.update(updated=updated, **listing_fields(session_id))
        collection.update(ids=[session_key(session_id)], metadatas=[meta])

    def clear(self, collection: Any, session_id: str) -> None:
        collection.delete(where=self.where(session_id))
        self.heads.pop(session_id, None)

    def delete(self, collection: Any, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        rows, session = self.state(collection, session_id, documents=False)
        named = set(message_ids)
        doomed: list[Row] = []
        owner_doomed = False
        for row in rows:
            named_here = str(row[3].get("mid")) in named
            if row[3].get("role") != "tool":
                owner_doomed = named_here
                if named_here:
                    doomed.append(row)
            elif owner_doomed:
                doomed.append(row)  # taken along with its calling message
            elif named_here:
                return DeleteOutcome(0, orphan=str(row[3].get("mid")))
        if doomed and session is not None:
            self._drop(collection, session_id, session, rows, doomed, updated=time.time())
        return DeleteOutcome(len(doomed))

    def truncate_after(self, collection: Any, session_id: str, message_id: str) -> int | None:
        rows, session = self.state(collection, session_id, documents=False)
        at = next((i for i, row in enumerate(rows) if row[3].get("mid") == message_id), None)
        if at is None or session is None:
            return None
        cut = at + 1
        while cut < len(rows) and rows[cut][3].get("role") == "tool":
            cut += 1
        if cut < len(rows):
            self._drop(collection, session_id, session, rows, rows[cut:], updated=time.time())
        return len(rows) - cut

    def remove(self, collection: Any, session_id: str, message_ids: Sequence[str]) -> None:
        rows, session = self.state(collection, session_id, documents=False)
        named = set(message_ids)
        doomed = [row for row in rows if row[3].get("mid") in named]
        if doomed and session is not None:
            self._drop(collection, session_id, session, rows, doomed, updated=None)

    def replace(
        self,
        collection: Any,
        session_id: str,
        records: Sequence[StoredRecord],
        vectors: Sequence[Sequence[float]],
        expected_last_id: str | None,
    ) -> bool:
        rows, session = self.state(collection, session_id, documents=False)
        last = str(rows[-1][3].get("mid")) if rows else None
        if last != expected_last_id:
            return False
        keep = {message_key(session_id, r.id) for r in records}
        doomed = [row[2] for row in rows if row[2] not in keep]
        if session is None:
            collection.delete(where=self.where(session_id))  # what is left of an expiry
        elif doomed:
            collection.delete(ids=doomed)
        if not records:
            collection.delete(ids=[session_key(session_id)])
            return True
        now = time.time()
        head = max(
            [
                self.heads.get(session_id, 0),
                int((session or {}).get("head", 0) or 0),
                *(row[0] for row in rows),
            ]
        )
        metadatas = [self.message_meta(session_id, r, head + n) for n, r in enumerate(records, 1)]
        meta = session_meta(
            session_id,
            expires=float(session.get("expires", 0) or 0) if session else 0.0,
            head=head + len(records),
            low=head + 1,
            created=session.get("created") if session else now,
            updated=now,
            keyed=True,  # every message is written again, with its `key`
        )
        # Renumbered after everything seen, so the rewritten history keeps its new order.
        self._write(
            collection,
            ids=[*(message_key(session_id, r.id) for r in records), session_key(session_id)],
            embeddings=[*vectors, self.blank()],
            documents=[*(r.data.decode("utf-8") for r in records), ""],
            metadatas=[*metadatas, meta],
        )
        self.heads[session_id] = head + len(records)
        return True

    # -- search -------------------------------------------------------------------------------

    def search(
        self, collection: Any, session_id: str, vector: list[float], k: int
    ) -> list[tuple[str, float]]:
        if self.session(collection, session_id) is None:
            return []
        result = collection.query(
            query_embeddings=[vector],
            n_results=k,
            where={
                "$and": [
                    {"sid": {"$eq": session_id}},
                    {"kind": {"$eq": MESSAGE}},
                    {"text": {"$eq": True}},
                ]
            },
            include=["documents", "distances"],
        )
        return [
            (str(document), float(distance))
            for document, distance in zip(
                result["documents"][0], result["distances"][0], strict=True
            )
        ]
