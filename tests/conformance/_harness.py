"""What a backend supplies so the conformance suite can test it.

To add a backend: write `_harness_<backend>.py` with a `BackendHarness` implementation and a
session-scoped fixture yielding it, then add the fixture's name to `BACKENDS` in `conftest.py`.
"""

from __future__ import annotations

from typing import Any, Protocol

from memweave.providers import ChatHistoryProvider


class BackendHarness(Protocol):
    """A backend under test, plus the two things the public API cannot do."""

    name: str
    """Short name shown in test ids."""

    url: str | None
    """A URL `from_url` turns into this backend from another OS process, or None."""

    def make(self, **options: Any) -> ChatHistoryProvider:
        """Build a provider with these constructor options (`max_messages`, `ttl`, ...)."""
        ...

    def isolated_options(self) -> dict[str, Any]:
        """Constructor options placing a provider in a namespace no other test shares (a
        fresh namespace), for rules about the whole store."""
        ...

    async def drop_isolated(self, history: ChatHistoryProvider) -> None:
        """Delete everything stored in the namespace of `history` (made with
        `isolated_options`)."""
        ...

    async def write_raw(self, history: ChatHistoryProvider, session_id: str, data: bytes) -> None:
        """Append `data` verbatim as the session's newest stored entry (a garbage entry)."""
        ...

    async def expire_now(self, history: ChatHistoryProvider, session_id: str) -> None:
        """Make the session's ttl run out now, as if its time had passed."""
        ...


def lower_message_limit(history: ChatHistoryProvider, limit: int) -> None:
    """Make `history` hold messages of at most `limit` stored bytes, as a smaller server
    setting (`max_allowed_packet`, `proto-max-bulk-len`) would.

    Every backend's real limit is hundreds of MiB or more (MariaDB's 8 MiB aside), too much to
    build in a test; the base class asks a backend for its limit once and keeps the answer,
    and this sets that answer. Backend tests (`tests/providers`) check the real limits.
    """
    history._record_limit = limit
