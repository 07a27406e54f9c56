"""URL helpers shared by backends: masking secrets before a URL reaches a message or a log."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["SECRET_QUERY_KEYS", "mask_url"]

SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_token"}
)
"""Query parameters whose values are secrets (`redis://host?password=...` works in redis-py and
SQLAlchemy alike), compared case-insensitively."""


def _mask_query(query: str) -> str:
    pieces = []
    for piece in query.split("&"):
        key, equals, _ = piece.partition("=")
        if equals and unquote(key).lower() in SECRET_QUERY_KEYS:
            piece = f"{key}=***"
        pieces.append(piece)
    return "&".join(pieces)


def mask_url(url: str) -> str:
    """Return `url` with its password, and the values of secret query parameters such as
    `?password=`, replaced by `***`; other parts are kept as given."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    masked = parts._replace(query=_mask_query(parts.query))
    if password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        masked = masked._replace(netloc=f"{user}:***@{hostinfo}")
    return url if masked == parts else urlunsplit(masked)
