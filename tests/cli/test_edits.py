"""`memweave sessions delete-messages|truncate-after|prune|purge-expired`, and durations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from memweave.cli._common import InvalidDuration, parse_duration
from memweave.cli._edits import format_duration
from memweave.providers.sql import SQLChatHistoryProvider
from tests.cli._helpers import Result, conversation, seed, stored

Cli = Callable[..., Result]


def _ids(url: str, prefix: str) -> dict[str, list[str]]:
    return {s: [m.id for m in ms] for s, ms in stored(url, prefix).items()}


def test_delete_messages_takes_the_tool_results_of_a_call_along(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """Deleting an assistant message that called a tool deletes its tool result too."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    result = cli(
        "sessions", "delete-messages", sqlite_url, f"{prefix}s", messages[2].id, messages[6].id,
        "--yes",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert f"deleted 3 messages from session '{prefix}s' at " in result.err
    assert "(the named ones and 1 tool result of their calls)" in result.err
    kept = [messages[i].id for i in (0, 1, 4, 5)]
    assert _ids(sqlite_url, prefix) == {f"{prefix}s": kept}


def test_delete_messages_asks_and_keeps_them_on_no(cli: Cli, sqlite_url: str, prefix: str) -> None:
    """Without --yes, delete-messages asks; any answer but yes deletes nothing."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    result = cli(
        "sessions", "delete-messages", sqlite_url, f"{prefix}s", messages[1].id, stdin=b"n\n"
    )
    assert result.code == 1
    assert f"Delete 1 message (and the tool results of any tool calls they made) from session " \
        f"'{prefix}s' (7 messages)" in result.err  # fmt: skip
    assert len(stored(sqlite_url, prefix)[f"{prefix}s"]) == 7
    yes = cli("sessions", "delete-messages", sqlite_url, f"{prefix}s", messages[1].id, stdin=b"y\n")
    assert yes.code == 0, yes.err
    assert len(stored(sqlite_url, prefix)[f"{prefix}s"]) == 6


def test_delete_messages_refuses_a_tool_result_without_its_call(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """Naming a tool result but not the message that called the tool deletes nothing."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    result = cli("sessions", "delete-messages", sqlite_url, f"{prefix}s", messages[3].id, "-y")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert f"message '{messages[3].id}' is a tool result" in result.err
    assert "nothing was deleted" in result.err
    assert len(stored(sqlite_url, prefix)[f"{prefix}s"]) == 7


def test_delete_messages_unknown_id_or_session_deletes_nothing(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """An id not stored in the session (a typo, most likely) stops before anything is deleted."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    result = cli(
        "sessions", "delete-messages", sqlite_url, f"{prefix}s", messages[1].id, "nope", "-y"
    )
    assert result.code == 1
    assert f"no message 'nope' in session '{prefix}s'; nothing was deleted" in result.err
    assert len(stored(sqlite_url, prefix)[f"{prefix}s"]) == 7
    missing = cli("sessions", "delete-messages", sqlite_url, f"{prefix}x", "m1", "-y")
    assert missing.code == 1
    assert f"no session '{prefix}x'" in missing.err


def test_truncate_after_keeps_the_message_and_its_tool_results(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """truncate-after ID deletes every newer message except the tool results right after ID."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    asked = cli("sessions", "truncate-after", sqlite_url, f"{prefix}s", messages[2].id, stdin=b"\n")
    assert asked.code == 1
    assert f"Delete every message after '{messages[2].id}' in session '{prefix}s'" in asked.err
    result = cli("sessions", "truncate-after", sqlite_url, f"{prefix}s", messages[2].id, "-y")
    assert result.code == 0, result.err
    assert f"deleted 3 messages after '{messages[2].id}'" in result.err
    assert _ids(sqlite_url, prefix) == {f"{prefix}s": [m.id for m in messages[:4]]}


def test_truncate_after_an_unknown_message_fails(cli: Cli, sqlite_url: str, prefix: str) -> None:
    """truncate-after naming no message of the session is one error line; nothing goes."""
    seed(sqlite_url, {f"{prefix}s": conversation()})
    result = cli("sessions", "truncate-after", sqlite_url, f"{prefix}s", "nope", "-y")
    assert result.code == 1
    assert result.err == (
        f"memweave: error: no message 'nope' in session '{prefix}s'; nothing was deleted\n"
    )
    assert len(stored(sqlite_url, prefix)[f"{prefix}s"]) == 7


def test_prune_deletes_only_sessions_not_updated_within_the_duration(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """prune --older-than counts with --dry-run, asks without --yes, then deletes the idle."""
    seed(sqlite_url, {f"{prefix}old": conversation(), f"{prefix}older": conversation()})
    time.sleep(2.2)  # so the sessions stored so far were last updated over 2 s ago
    seed(sqlite_url, {f"{prefix}new": conversation()})
    dry = cli("sessions", "prune", sqlite_url, "--older-than", "2s", "--dry-run")
    assert dry.code == 0, dry.err
    assert "2 sessions not updated within 2s at" in dry.err
    assert "(dry run: nothing deleted)" in dry.err
    declined = cli("sessions", "prune", sqlite_url, "--older-than", "2s", stdin=b"no\n")
    assert declined.code == 1
    assert "Delete 2 sessions not updated within 2s at" in declined.err
    assert len(stored(sqlite_url, prefix)) == 3
    result = cli("sessions", "prune", sqlite_url, "--older-than", "2s", "--yes")
    assert result.code == 0, result.err
    assert "deleted 2 sessions not updated within 2s" in result.err
    assert list(stored(sqlite_url, prefix)) == [f"{prefix}new"]
    none = cli("sessions", "prune", sqlite_url, "--older-than", "30d")
    assert none.code == 0
    assert "0 sessions not updated within 30d" in none.err
    assert "nothing to delete" in none.err


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("3x", "invalid duration '3x': unknown unit 'x'"),
        ("30", "invalid duration '30': '30' has no unit: write 30d for days"),
        ("0d", "invalid duration '0d': must be longer than zero"),
        ("1.5h", "invalid duration '1.5h': expected a whole number and a unit"),
    ],
)
def test_prune_bad_duration_is_a_usage_error(
    cli: Cli, sqlite_url: str, given: str, expected: str
) -> None:
    """A duration prune cannot read is one usage-error line naming the rule it broke."""
    result = cli("sessions", "prune", sqlite_url, "--older-than", given, "--dry-run")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "argument --older-than: " + expected in result.err


def test_purge_expired_reclaims_sessions_whose_ttl_ran_out(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """purge-expired deletes what is left of expired sessions and says how many."""

    async def write() -> None:
        async with SQLChatHistoryProvider(sqlite_url, ttl=timedelta(seconds=1)) as history:
            await history.add_messages(f"{prefix}brief", conversation())

    asyncio.run(write())
    seed(sqlite_url, {f"{prefix}kept": conversation()})
    time.sleep(1.5)  # past the 1 s ttl
    result = cli("sessions", "purge-expired", sqlite_url)
    assert result.code == 0, result.err
    assert "purged 1 expired session at" in result.err
    assert list(stored(sqlite_url, prefix)) == [f"{prefix}kept"]
    again = cli("sessions", "purge-expired", sqlite_url)
    assert "purged 0 expired sessions" in again.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("30m1w", timedelta(weeks=1, minutes=30)),
    ],
)
def test_parse_duration_reads_numbers_with_units(text: str, expected: timedelta) -> None:
    """Whole numbers each with a unit w, d, h, m or s, summed; format_duration writes it back."""
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected a whole number and a unit"),
        ("d", "expected a whole number and a unit"),
        ("-5d", "expected a whole number and a unit"),
        ("1 d", "expected a whole number and a unit"),
        ("30", "'30' has no unit"),
        ("30days", "unknown unit 'days'"),
        ("3M", "unknown unit 'M'"),
        ("1d1d", "the unit 'd' appears twice"),
        ("0s", "must be longer than zero"),
        ("9999999999w", "is longer than Python can represent"),
    ],
)
def test_parse_duration_refuses_other_text(text: str, reason: str) -> None:
    """Anything else raises `InvalidDuration` carrying the text and the rule it broke."""
    with pytest.raises(InvalidDuration) as caught:
        parse_duration(text)
    assert caught.value.text == text
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)
