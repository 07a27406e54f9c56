"""Argument checks of `ChatHistoryProvider`'s constructor and public methods: each returns
the value to use or raises the typed error naming the bad value and the rule it broke."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TypeGuard

from memweave.errors import ConfigurationError, InvalidArgument
from memweave.messages import could_be_id
from memweave.providers._base_reads import MAX_PAGE, NOT_IN_SESSION
from memweave.reducers.base import ChatReducer

__all__ = [
    "check_before",
    "check_limit",
    "check_message_id",
    "check_message_ids",
    "check_older_than",
    "check_options",
    "check_page_size",
    "check_session_query",
    "orphaned",
]


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_options(
    *,
    max_messages: object,
    ttl: object,
    on_corrupt: object,
    reducer: object,
    reduce_on: object,
) -> None:
    """The options every backend shares.

    Raises:
        ConfigurationError: One of them is out of its range or of the wrong type.
    """
    if max_messages is not None and not (_is_int(max_messages) and max_messages > 0):
        raise ConfigurationError(f"max_messages must be a positive int, got {max_messages!r}")
    if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
        raise ConfigurationError(f"ttl must be a positive timedelta, got {ttl!r}")
    if on_corrupt not in ("raise", "skip"):
        raise ConfigurationError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    if reduce_on not in ("read", "write"):
        raise ConfigurationError(f"reduce_on must be 'read' or 'write', got {reduce_on!r}")
    if reducer is not None and not isinstance(reducer, ChatReducer):
        raise ConfigurationError(f"reducer must be a ChatReducer, got {reducer!r}")


def check_limit(limit: int | None) -> int | None:
    """`list_messages`' `limit`: None or an int >= 0.

    Raises:
        InvalidArgument: Anything else.
    """
    if limit is not None and not (_is_int(limit) and limit >= 0):
        raise InvalidArgument("limit", limit, "must be a non-negative int or None")
    return limit


def check_before(before: object, reducer: object) -> str:
    """`list_messages`' `before` cursor, given (not None), with its `reducer`.

    Raises:
        InvalidArgument: `before` is not a str, is combined with a reducer, or cannot be a
            stored message id.
    """
    if not isinstance(before, str):
        raise InvalidArgument("before", before, "must be a message id (str) or None")
    if reducer is not None:
        raise InvalidArgument(
            "before", before, "cannot be combined with reducer (a window is newest-first)"
        )
    if not could_be_id(before):
        raise InvalidArgument("before", before, NOT_IN_SESSION)
    return before


def check_page_size(page_size: object) -> int:
    """`iter_messages`' `page_size`: an int from 1 to `MAX_PAGE`.

    Raises:
        InvalidArgument: Anything else.
    """
    if not (_is_int(page_size) and 1 <= page_size <= MAX_PAGE):
        raise InvalidArgument("page_size", page_size, f"must be an int from 1 to {MAX_PAGE}")
    return page_size


def check_message_ids(message_ids: object) -> list[str]:
    """`delete_messages`' ids, each once, in order, less those no message can have (a lone
    surrogate, ...): stored nowhere, so ignored as unknown ids are.

    Raises:
        InvalidArgument: Not an iterable of str (a lone str is refused).
    """
    if isinstance(message_ids, str | bytes) or not isinstance(message_ids, Iterable):
        raise InvalidArgument(
            "message_ids", message_ids, "must be an iterable of message ids (not one str)"
        )
    ids = list(dict.fromkeys(message_ids))
    bad = next((i for i in ids if not isinstance(i, str)), None)
    if bad is not None:
        raise InvalidArgument("message_ids", bad, "every message id must be a str")
    return [i for i in ids if could_be_id(i)]


def check_session_query(prefix: object, after: object, limit: object) -> None:
    """`list_sessions`' arguments.

    Raises:
        InvalidArgument: `prefix` or `after` is not a str or None, or `limit` is not a
            positive int or None.
    """
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidArgument("prefix", prefix, "must be a str or None")
    if after is not None and not isinstance(after, str):
        raise InvalidArgument("after", after, "must be a str or None")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise InvalidArgument("limit", limit, "must be a positive int or None")


def check_message_id(message_id: object) -> str:
    """`truncate_after`'s message id.

    Raises:
        InvalidArgument: Not a str, or not an id any stored message can have.
    """
    if not isinstance(message_id, str):
        raise InvalidArgument("message_id", message_id, "must be a message id (str)")
    if not could_be_id(message_id):
        raise InvalidArgument("message_id", message_id, NOT_IN_SESSION)
    return message_id


def check_older_than(older_than: object) -> timedelta:
    """`prune`'s `older_than`: a positive timedelta.

    Raises:
        InvalidArgument: Anything else.
    """
    if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
        raise InvalidArgument("older_than", older_than, "must be a positive timedelta")
    return older_than


def orphaned(message_id: str) -> InvalidArgument:
    """The error of a `delete_messages` naming the tool result `message_id` without the
    message that called the tool."""
    return InvalidArgument(
        "message_ids",
        message_id,
        "is a tool result whose calling message was not named; delete the message that "
        "called the tool (its results go with it)",
    )
