"""The arguments of `ChromaChatHistoryProvider` that take more than a check: its namespace and
collection (from options or the URL's query), and the deprecated argument order of `search`."""

from __future__ import annotations

from typing import Any

from memweave._deprecation import warn_renamed
from memweave.errors import ConfigurationError, InvalidArgument
from memweave.providers._namespace import chroma_names

__all__ = ["old_search_call", "resolve_names"]


def resolve_names(
    namespace: str | None, collection: str | None, in_url: dict[str, Any], owner: str
) -> tuple[str, str]:
    """The namespace and collection of a provider, from its options or its URL's query
    (`?namespace=`, or the deprecated `?collection=`, which the caller warns about).

    Raises:
        ConfigurationError: A bad name; `?namespace=` and `?collection=` both in the URL; or
            an option and the URL naming different collections.
    """
    url_namespace, url_collection = in_url.get("namespace"), in_url.get("collection")
    if url_namespace is not None and url_collection is not None:
        raise ConfigurationError(
            f"{owner}: the URL has both ?namespace= and its deprecated name ?collection=; "
            "keep ?namespace= only"
        )
    in_query = None
    if url_namespace is not None or url_collection is not None:
        in_query = chroma_names(url_namespace, url_collection, owner=owner, option="?namespace=")
    if namespace is None and collection is None:
        return in_query or chroma_names(None, None, owner=owner)
    given = chroma_names(namespace, collection, owner=owner)
    if in_query is not None and in_query[1] != given[1]:
        raise ConfigurationError(
            f"{owner}: the namespace is given twice, as an option ({given[0]!r}) and in the "
            f"URL ({in_query[0]!r}); give it once"
        )
    return given


def old_search_call(
    first: str, old: tuple[Any, ...], session_id: str | None, k: int
) -> tuple[Any, str, Any]:
    """`(query, session_id, k)` of a call in the order of earlier releases,
    `search(session_id, query[, k])`, with a `DeprecationWarning` at the caller of the
    `search` that called this.

    Raises:
        InvalidArgument: Too many positional arguments, or `session_id` or `k` given both ways.
    """
    usage = "call search(query, session_id=..., k=...)"
    if len(old) > 2:
        raise InvalidArgument("positional arguments", (first, *old), f"are too many; {usage}")
    if len(old) == 2 and k != 5:
        raise InvalidArgument("k", k, f"is given twice; {usage}")
    if session_id is not None:
        raise InvalidArgument("session_id", session_id, f"is given twice; {usage}")
    warn_renamed(
        "ChromaChatHistoryProvider.search(session_id, query, k)",
        "search(query, session_id=..., k=...)",
        stacklevel=4,
    )
    return old[0], first, old[1] if len(old) == 2 else k
