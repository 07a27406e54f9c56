"""Timeouts and retries: every backend takes `timeout=` and `retries=` (also from its URL's
query), checks them, and never retries a failure that is not transient."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest

from memweave import ConfigurationError, CorruptRecord, InvalidArgument
from memweave.providers import ChatHistoryProvider, from_url
from memweave.providers.base import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from memweave.providers.url import backend_options
from tests.conformance._builders import make_messages, texts
from tests.conformance._harness import BackendHarness

BAD_TIMEOUTS: list[Any] = [0, -1, -0.5, math.nan, math.inf, "10", True, [1]]
BAD_RETRIES: list[Any] = [-1, 11, 1.5, "3", True, None]
BAD_QUERIES = ["timeout=abc", "timeout=0", "timeout=-2", "timeout=inf", "retries=-1", "retries=x"]


def _with_query(url: str | None, query: str) -> str:
    if url is None:
        pytest.fail("every conformance backend has a URL")
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=repr)
def test_constructor_rejects_a_timeout_that_is_not_positive_seconds(
    harness: BackendHarness, value: Any
) -> None:
    """A `timeout` that is not a positive, finite number of seconds (or None) is refused."""
    with pytest.raises(ConfigurationError, match="timeout"):
        harness.make(timeout=value)


@pytest.mark.parametrize("value", BAD_RETRIES, ids=repr)
def test_constructor_rejects_retries_outside_zero_to_ten(
    harness: BackendHarness, value: Any
) -> None:
    """`retries` must be an int from 0 to 10."""
    with pytest.raises(ConfigurationError, match="retries"):
        harness.make(retries=value)


def test_constructor_defaults_to_a_finite_timeout_and_retries(
    make_history: Callable[..., ChatHistoryProvider],
) -> None:
    """Every backend has a finite default `timeout` and retries by default."""
    history = make_history()
    assert history.timeout == DEFAULT_TIMEOUT
    assert 0 < DEFAULT_TIMEOUT < math.inf
    assert history.retries == DEFAULT_RETRIES > 0


async def test_timeout_none_lifts_the_limit(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`timeout=None` (and `retries=0`) is taken, and calls work as with the defaults."""
    history = make_history(timeout=None, retries=0)
    await history.add_messages(session_id, make_messages(3))
    assert history.timeout is None
    assert history.retries == 0
    assert texts(await history.list_messages(session_id, limit=2)) == ["message 1", "message 2"]


async def test_from_url_takes_timeout_and_retries_from_the_query(
    harness: BackendHarness, make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`?timeout=2.5&retries=0` sets both options, and the driver never sees them."""
    make_history()  # the fixture then deletes this test's sessions
    async with from_url(_with_query(harness.url, "timeout=2.5&retries=0")) as history:
        assert (history.timeout, history.retries) == (2.5, 0)
        await history.add_messages(session_id, make_messages(2))
        assert await history.count_messages(session_id) == 2


async def test_from_url_takes_timeout_none_from_the_query(
    harness: BackendHarness, make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`?timeout=none` means no limit."""
    make_history()
    async with from_url(_with_query(harness.url, "timeout=none")) as history:
        assert history.timeout is None
        assert history.retries == DEFAULT_RETRIES
        await history.add_messages(session_id, make_messages(1))
        assert await history.count_messages(session_id) == 1


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_from_url_rejects_a_bad_query_value(harness: BackendHarness, query: str) -> None:
    """A bad `timeout` or `retries` in the URL is a `ConfigurationError` naming it."""
    name = query.split("=", 1)[0]
    with pytest.raises(ConfigurationError, match=name):
        from_url(_with_query(harness.url, query))


def test_from_url_refuses_an_option_given_twice_with_different_values(
    harness: BackendHarness,
) -> None:
    """An option in the URL and as a keyword with another value is refused, not guessed."""
    with pytest.raises(ConfigurationError, match="timeout"):
        from_url(_with_query(harness.url, "timeout=2"), timeout=3)
    with pytest.raises(ConfigurationError, match="retries"):
        from_url(_with_query(harness.url, "retries=1"), retries=2)


def test_backend_options_list_timeout_and_retries(
    make_history: Callable[..., ChatHistoryProvider],
) -> None:
    """`backend_options` names `timeout` and `retries` for every backend."""
    options = backend_options(type(make_history()))
    assert {"timeout", "retries"} <= set(options)


async def test_list_messages_does_not_retry_a_non_transient_failure(
    history: ChatHistoryProvider, session_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A call whose failure is not transient (a bad cursor, found by a read) runs once."""
    await history.add_messages(session_id, make_messages(2))
    with caplog.at_level(logging.DEBUG, logger="memweave"), pytest.raises(InvalidArgument):
        await history.list_messages(session_id, limit=5, before="no-such-message")
    assert not [record for record in caplog.records if "retrying" in record.getMessage()]


async def test_list_messages_does_not_retry_a_corrupt_record(
    history: ChatHistoryProvider,
    harness: BackendHarness,
    session_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A corrupt stored entry is bad data, reported at once, never read again and again."""
    await history.add_messages(session_id, make_messages(1))
    await harness.write_raw(history, session_id, b"not json")
    with caplog.at_level(logging.DEBUG, logger="memweave"), pytest.raises(CorruptRecord):
        await history.list_messages(session_id)
    assert not [record for record in caplog.records if "retrying" in record.getMessage()]
