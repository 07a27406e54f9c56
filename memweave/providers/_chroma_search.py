"""`ChromaChatHistoryProvider.search`'s result type, the checks of its arguments, and the
decoding of what Chroma found."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from memweave._codec import OnCorrupt, decode_one
from memweave.errors import CorruptRecord, InvalidArgument
from memweave.messages import ChatMessage
from memweave.session import validate_session_id

__all__ = ["MessageHit", "check_search", "decode_hits"]

logger = logging.getLogger("memweave.providers.chroma")  # where these warnings always came from


class MessageHit(BaseModel):
    """One message found by `ChromaChatHistoryProvider.search`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: ChatMessage
    """The stored message."""
    score: float = Field(ge=0.0, le=1.0)
    """Cosine similarity to the query, clipped to [0, 1]; higher is better."""


def check_search(query: object, session_id: object, k: object) -> str:
    """The session id to search, once `query`, `session_id` and `k` are checked.

    Raises:
        InvalidSessionId: The session id cannot be stored.
        InvalidArgument: No `session_id`, `query` is not a str, or `k` is not an int from 1
            to 1000.
    """
    if session_id is None:
        raise InvalidArgument("session_id", None, "is required: the session to search")
    checked = validate_session_id(session_id)
    if not isinstance(query, str):
        raise InvalidArgument("query", query, "must be a str")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidArgument("k", k, "must be an int from 1 to 1000")
    return checked


def decode_hits(
    found: Sequence[tuple[str, float]], session_id: str, on_corrupt: OnCorrupt
) -> list[MessageHit]:
    """The hits of `found` (document, cosine distance), best first, scored in [0, 1]; a
    document that cannot be decoded raises, or with `on_corrupt="skip"` is left out with a
    warning.

    Raises:
        CorruptRecord: A hit could not be decoded (with `on_corrupt="raise"`).
    """
    hits: list[MessageHit] = []
    for position, (document, distance) in enumerate(found):
        try:
            message = decode_one(document, session_id=session_id, position=position)
        except CorruptRecord as exc:
            if on_corrupt == "raise":
                raise
            logger.warning("skipping %s", exc)
            continue
        hits.append(MessageHit(message=message, score=max(0.0, min(1.0, 1.0 - distance))))
    return hits
