"""URLs: secrets never reach a message, and a URL that cannot be parsed is a clear error."""

from __future__ import annotations

import pytest

from memweave import ConfigurationError, from_url
from memweave._urls import mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("sqlite+aiosqlite:///chat.db", "sqlite+aiosqlite:///chat.db"),
        ("chroma:///p?namespace=a", "chroma:///p?namespace=a"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql+asyncpg://ada:s3cret@h/db", "postgresql+asyncpg://ada:***@h/db"),
        ("redis://127.0.0.1:1/0?password=s3cret", "redis://127.0.0.1:1/0?password=***"),
        (
            "postgresql+asyncpg://ada@h/db?ssl=true&PASSWORD=s3cret&x=1",
            "postgresql+asyncpg://ada@h/db?ssl=true&PASSWORD=***&x=1",
        ),
        ("rediss://u:a@h/0?token=t0k&api_key=k3y", "rediss://u:***@h/0?token=***&api_key=***"),
        ("postgresql+asyncpg://root@[::1", "<unparseable url>"),
    ],
)
def test_mask_url_hides_passwords_and_secret_query_values(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://root:s3cret@[::1/db",
        "redis://h:99999/0?password=s3cret",
        "redis://u:s3cret@h:port/0",
    ],
)
def test_from_url_rejects_an_unparsable_url_without_showing_secrets(url: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot parse URL") as caught:
        from_url(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "option", "known"),
    [
        ("memory://", "max_mesages", "max_messages"),
        ("sqlite+aiosqlite:///unused.db", "namespce", "namespace"),
        ("redis://127.0.0.1:6379/0", "prefx", "namespace"),
    ],
)
def test_from_url_rejects_an_unknown_option_listing_the_known_ones(
    url: str, option: str, known: str
) -> None:
    """A mistyped option is a `ConfigurationError` that names it and lists the options the
    backend takes, never a bare `TypeError`."""
    with pytest.raises(ConfigurationError) as raised:
        from_url(url, **{option: 1})
    assert repr(option) in str(raised.value)
    assert known in str(raised.value)
