"""`memweave sessions list|show|export|import|delete`, through the real entry point."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memweave.bench._workload import make_conversation
from memweave.cli._records import dump_record, to_record
from tests.cli._helpers import (
    Reads,
    Result,
    conversation,
    recording_open,
    run_subprocess,
    seed,
    stored,
)

Cli = Callable[..., Result]


def _ids(url: str, prefix: str) -> dict[str, list[str]]:
    return {s: [m.id for m in ms] for s, ms in stored(url, prefix).items()}


def test_list_prints_each_session_with_its_count(cli: Cli, store_url: str, prefix: str) -> None:
    """Piped output is one `id<TAB>count` line per session, sorted, scoped by --prefix."""
    seed(store_url, {f"{prefix}b": conversation(), f"{prefix}a:{{x}}*%_": conversation()[:3]})
    result = cli("sessions", "list", store_url, "--prefix", prefix)
    assert result.code == 0, result.err
    assert result.out == f"{prefix}a:{{x}}*%_\t3\n{prefix}b\t7\n"


def test_list_json_is_one_array(cli: Cli, redis_url: str, prefix: str) -> None:
    """--json prints the sessions and counts as one JSON array."""
    seed(redis_url, {f"{prefix}s": conversation()})
    result = cli("sessions", "list", redis_url, "--prefix", prefix, "--json")
    assert json.loads(result.out) == [{"session": f"{prefix}s", "messages": 7}]


def test_show_prints_roles_names_tool_calls_and_times(
    cli: Cli, store_url: str, prefix: str
) -> None:
    """The transcript shows each message's time, role, author, text and tool calls."""
    messages = conversation()
    seed(store_url, {f"{prefix}s": messages})
    result = cli("sessions", "show", store_url, f"{prefix}s")
    assert result.code == 0, result.err
    out = result.out
    assert f"session '{prefix}s'" in out
    assert "7 messages" in out
    assert "[2024-05-01 09:30:00 UTC] system" in out
    assert "[bold]not markup[/bold]" in out  # shown as text, never as rich markup
    assert "user (ada)" in out
    assert "日本語" in out
    call = messages[2].tool_calls[0]
    assert f'-> get_weather({{"city": "Zürich"}})  call {call.id}' in out
    assert f"tool result of {call.id}" in out
    assert "  It is 12.5 °C.\n  Take an umbrella." in out
    assert "[image https://example.com/a.png]" in out
    assert "refused: I cannot look at images." in out
    assert '"source": "web"' in out
    assert out.index("system") < out.index("user (ada)") < out.index("refused")


def test_show_last_n_prints_only_the_newest(cli: Cli, redis_url: str, prefix: str) -> None:
    """--last N shows the newest N messages and says how many there are in all."""
    seed(redis_url, {f"{prefix}s": conversation()})
    result = cli("sessions", "show", redis_url, f"{prefix}s", "--last", "2")
    assert "7 messages (the last 2)" in result.out
    assert "Take an umbrella" not in result.out
    assert "And this picture?" in result.out


def test_show_json_prints_export_records(cli: Cli, redis_url: str, prefix: str) -> None:
    """--json prints one export record per message, in order."""
    messages = conversation()
    seed(redis_url, {f"{prefix}s": messages})
    result = cli("sessions", "show", redis_url, f"{prefix}s", "--json")
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [r["id"] for r in records] == [m.id for m in messages]
    first = records[1]
    assert first["version"] == 1
    assert first["session"] == f"{prefix}s"
    assert first["created_at"] == "2024-05-01T09:30:07.123457Z"
    assert first["role"] == "user"
    assert first["name"] == "ada"
    assert first["metadata"]["n"] == [1, 2.5, None, True]
    assert records[2]["content"] is None
    assert records[2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_export_import_round_trip_is_byte_identical(
    cli: Cli, store_url: str, prefix: str, tmp_path: Path
) -> None:
    """Export, import elsewhere and export again: same ids, order and bytes."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    sessions = {
        f"{prefix}a:{{x}}*%_'\"é": conversation("a"),
        f"{prefix}b": make_conversation(250, seed=7),
    }
    seed(source, sessions)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert cli("sessions", "export", source, "--prefix", prefix, "-o", str(first)).code == 0
    imported = cli("sessions", "import", store_url, str(first))
    assert imported.code == 0, imported.err
    assert "imported 257 new messages into 2 sessions" in imported.err
    assert cli("sessions", "export", store_url, "--prefix", prefix, "-o", str(second)).code == 0
    assert second.read_bytes() == first.read_bytes()
    assert _ids(store_url, prefix) == {s: [m.id for m in ms] for s, ms in sessions.items()}
    assert stored(store_url, prefix) == sessions


def test_export_to_stdout_equals_export_to_file(
    cli: Cli, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """`export URL > file` writes the same JSON Lines as `-o file`, and reports on stderr."""
    seed(redis_url, {f"{prefix}s": conversation()})
    path = tmp_path / "out.jsonl"
    cli("sessions", "export", redis_url, "--prefix", prefix, "-o", str(path))
    result = cli("sessions", "export", redis_url, "--prefix", prefix)
    assert result.out.encode() == path.read_bytes()
    assert "exported 7 messages of 1 sessions" in result.err


def test_import_is_idempotent_by_id(cli: Cli, redis_url: str, prefix: str, tmp_path: Path) -> None:
    """Importing the same file twice stores each message once."""
    seed(redis_url, {f"{prefix}s": conversation()})
    path = tmp_path / "s.jsonl"
    cli("sessions", "export", redis_url, "--prefix", prefix, "-o", str(path))
    before = stored(redis_url, prefix)
    again = cli("sessions", "import", redis_url, stdin=path.read_bytes())
    assert again.code == 0, again.err
    assert "imported 0 new messages" in again.err
    assert "7 of 7 were already there" in again.err
    assert stored(redis_url, prefix) == before


def test_import_reads_stdin_and_keeps_ids_and_times(cli: Cli, sqlite_url: str, prefix: str) -> None:
    """Records piped to import keep their ids and timestamps; blank lines are skipped."""
    lines = [
        {"session": f"{prefix}s", "id": "m1", "created_at": "2023-01-02T03:04:05.5Z",
         "role": "user", "content": "hi"},
        {"version": 1, "session": f"{prefix}s", "id": "m2", "role": "assistant",
         "content": "hello", "metadata": {"x": 1}},
    ]  # fmt: skip
    data = b"\n".join(json.dumps(line).encode() for line in lines) + b"\n\n"
    result = cli("sessions", "import", sqlite_url, stdin=data)
    assert result.code == 0, result.err
    messages = stored(sqlite_url, prefix)[f"{prefix}s"]
    assert [m.id for m in messages] == ["m1", "m2"]
    assert messages[0].created_at.isoformat() == "2023-01-02T03:04:05.500000+00:00"
    assert messages[1].metadata == {"x": 1}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"not json", "line 2: not valid JSON"),
        (b"[1, 2]", "line 2: expected a JSON object, got list"),
        (b'{"role": "user", "content": "x"}', "line 2: the record has no 'session'"),
        (b'{"session": "s", "role": "robot"}', "line 2: invalid message: field 'role'"),
        (b'{"session": "s", "role": "user", "colour": 1}', "field 'colour': unknown field"),
        (b'{"version": 2, "session": "s", "role": "user"}', "record version 2 is not supported"),
    ],
)
def test_import_bad_line_fails_naming_the_line(
    cli: Cli, sqlite_url: str, line: bytes, expected: str
) -> None:
    """A malformed record stops the import with one line naming its line number."""
    good = b'{"session": "ok", "role": "user", "content": "x"}\n'
    result = cli("sessions", "import", sqlite_url, stdin=good + line + b"\n")
    assert result.code == 1
    assert result.err.startswith("memweave: error: ")
    assert expected in result.err
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err


def _record(session: str, index: int, *, with_id: bool = True) -> bytes:
    record: dict[str, object] = {"session": session, "role": "user", "content": f"m{index}"}
    if with_id:
        record["id"] = f"m{index}"
    return json.dumps(record).encode() + b"\n"


@pytest.mark.parametrize("from_file", [True, False], ids=["file", "stdin"])
def test_import_bad_line_says_what_was_imported_and_that_a_rerun_skips_it(
    cli: Cli, sqlite_url: str, prefix: str, tmp_path: Path, from_file: bool
) -> None:
    """A bad line stops the import with every line before it stored, says how many, and the
    fixed file imports the rest without duplicates."""
    session = f"{prefix}s"
    good = [_record(session, index) for index in range(5)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(good[:3]) + b"not json\n" + b"".join(good[3:]))
    source = [str(path)] if from_file else []
    stdin = b"" if from_file else path.read_bytes()
    result = cli("sessions", "import", sqlite_url, *source, "--batch-size", "2", stdin=stdin)
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("memweave: error: line 4: not valid JSON")
    assert "the 3 messages before it were imported (3 of them new)" in lines[0]
    assert "run the import again: messages already imported are skipped by id" in lines[0]
    assert [m.id for m in stored(sqlite_url, prefix)[session]] == ["m0", "m1", "m2"]
    path.write_bytes(b"".join(good))
    again = cli("sessions", "import", sqlite_url, str(path))
    assert again.code == 0, again.err
    assert "imported 2 new messages" in again.err
    assert "3 of 5 were already there" in again.err
    assert [m.id for m in stored(sqlite_url, prefix)[session]] == [f"m{i}" for i in range(5)]


def test_import_bad_line_warns_that_records_without_ids_would_be_added_again(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """Records with no id get a new one on each import, and the error says so."""
    data = _record(f"{prefix}s", 0) + _record(f"{prefix}s", 1, with_id=False) + b"[]\n"
    result = cli("sessions", "import", sqlite_url, stdin=data)
    assert result.code == 1
    assert "line 3: expected a JSON object, got list" in result.err
    assert "the 2 messages before it were imported" in result.err
    assert "except the 1 record without an 'id', which would be added again" in result.err


def test_import_bad_first_line_imports_nothing(cli: Cli, sqlite_url: str) -> None:
    """A bad first line stops the import before anything is stored, and says so."""
    result = cli("sessions", "import", sqlite_url, stdin=b"{\n")
    assert result.code == 1
    assert "line 1: not valid JSON" in result.err
    assert result.err.rstrip().endswith("nothing was imported")


def test_delete_asks_and_keeps_the_session_on_no(cli: Cli, redis_url: str, prefix: str) -> None:
    """Without --yes, delete asks; any answer but yes deletes nothing."""
    seed(redis_url, {f"{prefix}s": conversation()})
    result = cli("sessions", "delete", redis_url, f"{prefix}s", stdin=b"n\n")
    assert result.code == 1
    assert f"Delete session '{prefix}s' (7 messages)" in result.err
    assert len(stored(redis_url, prefix)[f"{prefix}s"]) == 7


def test_delete_removes_the_session_on_yes(cli: Cli, store_url: str, prefix: str) -> None:
    """Answering y (or passing --yes) deletes every message of the named sessions only."""
    seed(store_url, {f"{prefix}a": conversation(), f"{prefix}b": conversation()})
    assert cli("sessions", "delete", store_url, f"{prefix}a", stdin=b"y\n").code == 0
    result = cli("sessions", "delete", store_url, f"{prefix}b", "--yes")
    assert result.code == 0
    assert "deleted 1 session(s), 7 messages" in result.err
    assert stored(store_url, prefix) == {}


def test_delete_unknown_session_fails(cli: Cli, redis_url: str, prefix: str) -> None:
    """Deleting a session that holds nothing is an error (a typo, most likely)."""
    result = cli("sessions", "delete", redis_url, f"{prefix}nope", "--yes")
    assert result.code == 1
    assert f"no session '{prefix}nope'" in result.err


def test_backend_options_reach_the_provider(cli: Cli, redis_url: str, prefix: str) -> None:
    """-O KEY=VALUE passes a constructor option, e.g. another Redis namespace."""
    from memweave.providers.redis import RedisChatHistoryProvider

    async def write() -> None:
        async with RedisChatHistoryProvider(redis_url, namespace="mwcli-other") as history:
            await history.add_messages(f"{prefix}s", conversation())

    asyncio.run(write())
    try:
        assert cli("sessions", "list", redis_url, "--prefix", prefix).out == ""
        result = cli(
            "sessions", "list", redis_url, "--prefix", prefix, "-O", "namespace=mwcli-other"
        )
        assert result.out == f"{prefix}s\t7\n"
    finally:
        cli("sessions", "delete", redis_url, f"{prefix}s", "-y", "-O", "namespace=mwcli-other")


def test_subprocess_export_pipes_into_import(redis_url: str, prefix: str, tmp_path: Path) -> None:
    """The installed command works end to end: export's stdout piped into import's stdin."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    seed(source, {f"{prefix}s": conversation()})
    exported = run_subprocess("sessions", "export", source, "--prefix", prefix)
    assert exported.returncode == 0, exported.stderr
    imported = run_subprocess("sessions", "import", redis_url, stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert stored(redis_url, prefix) == stored(source, prefix)


def test_list_limit_and_after_page_through_the_sessions(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """--limit N lists one page and says how to get the next; --after ID goes on from ID."""
    ids = [f"{prefix}{n}" for n in range(5)]
    seed(sqlite_url, {session: conversation()[:2] for session in ids})
    first = cli("sessions", "list", sqlite_url, "--prefix", prefix, "--limit", "2")
    assert first.code == 0, first.err
    assert first.out == f"{ids[0]}\t2\n{ids[1]}\t2\n"
    assert f"more sessions follow: add --after {ids[1]}" in first.err
    second = cli(
        "sessions", "list", sqlite_url, "--prefix", prefix, "--limit", "2", "--after", ids[1]
    )
    assert second.out == f"{ids[2]}\t2\n{ids[3]}\t2\n"
    last = cli(
        "sessions", "list", sqlite_url, "--prefix", prefix, "--limit", "2", "--after", ids[3]
    )
    assert last.out == f"{ids[4]}\t2\n"
    assert "more sessions follow" not in last.err


def test_list_reads_sessions_a_page_at_a_time(
    cli: Cli, sqlite_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing every session asks the store for bounded pages, never for all ids at once."""
    ids = [f"{prefix}{n}" for n in range(5)]
    seed(sqlite_url, {session: conversation()[:1] for session in ids})
    reads = Reads()
    monkeypatch.setattr("memweave.cli.sessions.open_history", recording_open(reads))
    monkeypatch.setattr("memweave.cli._common.SESSION_PAGE", 2)
    result = cli("sessions", "list", sqlite_url, "--prefix", prefix, "--json")
    assert result.code == 0, result.err
    assert [row["session"] for row in json.loads(result.out)] == ids
    assert reads.listings == [2, 2, 2]


def test_list_json_streamed_is_the_same_as_one_dump(cli: Cli, sqlite_url: str, prefix: str) -> None:
    """--json output is what `json.dumps(rows, indent=2)` prints, also when empty."""
    seed(sqlite_url, {f"{prefix}a": conversation(), f"{prefix}b": conversation()[:1]})
    rows = [{"session": f"{prefix}a", "messages": 7}, {"session": f"{prefix}b", "messages": 1}]
    result = cli("sessions", "list", sqlite_url, "--prefix", prefix, "--json")
    assert result.out == json.dumps(rows, indent=2) + "\n"
    empty = cli("sessions", "list", sqlite_url, "--prefix", f"{prefix}none", "--json")
    assert empty.out == "[]\n"


def test_list_long_shows_when_each_session_was_created_and_updated(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """--long adds the session's created and updated times (UTC, ISO 8601) to each row."""
    start = datetime.now(UTC) - timedelta(seconds=5)
    seed(sqlite_url, {f"{prefix}s": conversation()})
    piped = cli("sessions", "list", sqlite_url, "--prefix", prefix, "--long")
    assert piped.code == 0, piped.err
    session, count, created, updated = piped.out.rstrip("\n").split("\t")
    assert (session, count) == (f"{prefix}s", "7")
    assert created.endswith("Z")
    assert start <= datetime.fromisoformat(created) <= datetime.fromisoformat(updated)
    rows = json.loads(cli("sessions", "list", sqlite_url, "--prefix", prefix, "-l", "--json").out)
    assert rows == [
        {"session": f"{prefix}s", "messages": 7, "created_at": created, "updated_at": updated}
    ]


def test_show_before_pages_back_through_older_messages(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """--last N --before ID shows the N messages just older than ID; --before alone all of
    them; a page that has older messages says how to show them."""
    messages = conversation()
    seed(sqlite_url, {f"{prefix}s": messages})
    newest = cli("sessions", "show", sqlite_url, f"{prefix}s", "--last", "2", "--json")
    assert [json.loads(line)["id"] for line in newest.out.splitlines()] == [
        m.id for m in messages[5:]
    ]
    text = cli("sessions", "show", sqlite_url, f"{prefix}s", "--last", "2")
    assert f"older messages: add --before {messages[5].id}" in text.err
    older = cli(
        "sessions", "show", sqlite_url, f"{prefix}s", "--last", "2", "--before", messages[5].id
    )
    assert older.code == 0, older.err
    assert f"7 messages (the 2 before '{messages[5].id}')" in older.out
    assert "Take an umbrella" in older.out
    assert "And this picture?" not in older.out
    assert f"add --before {messages[3].id}" in older.err
    every = cli("sessions", "show", sqlite_url, f"{prefix}s", "--before", messages[2].id, "--json")
    assert [json.loads(line)["id"] for line in every.out.splitlines()] == [
        m.id for m in messages[:2]
    ]
    oldest = cli(
        "sessions", "show", sqlite_url, f"{prefix}s", "--last", "5", "--before", messages[2].id
    )
    assert "older messages" not in oldest.err


def test_show_before_an_unknown_message_fails(cli: Cli, sqlite_url: str, prefix: str) -> None:
    """--before naming no message of the session is one error line, with nothing printed."""
    seed(sqlite_url, {f"{prefix}s": conversation()})
    for extra in ([], ["--last", "3"]):
        result = cli("sessions", "show", sqlite_url, f"{prefix}s", "--before", "nope", *extra)
        assert result.code == 1
        assert result.out == ""
        assert result.err == f"memweave: error: no message 'nope' in session '{prefix}s'\n"


def test_show_streams_the_session_a_page_at_a_time(
    cli: Cli, sqlite_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transcript of the whole session is read in pages, never as one whole read."""
    messages = make_conversation(1200, seed=5)
    seed(sqlite_url, {f"{prefix}s": messages})
    reads = Reads()
    monkeypatch.setattr("memweave.cli.sessions.open_history", recording_open(reads))
    result = cli("sessions", "show", sqlite_url, f"{prefix}s", "--json")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1200
    assert reads.whole == []
    assert [limit for limit, _ in reads.pages] == [500, 500, 500]


def test_export_reads_one_page_at_a_time(
    cli: Cli, sqlite_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export streams each session in pages of --page-size and never reads a session whole."""
    sessions = {f"{prefix}a": make_conversation(1234, seed=9), f"{prefix}b": conversation()}
    seed(sqlite_url, sessions)
    reads = Reads()
    monkeypatch.setattr("memweave.cli.sessions.open_history", recording_open(reads))
    path = tmp_path / "out.jsonl"
    result = cli(
        "sessions", "export", sqlite_url, "--prefix", prefix, "--page-size", "100", "-o", str(path)
    )
    assert result.code == 0, result.err
    assert "exported 1,241 messages of 2 sessions" in result.err
    assert reads.whole == []
    assert None not in reads.listings
    # Session a: 12 full pages and one of 34; session b: one page of 7.
    assert reads.pages == [(100, 100)] * 12 + [(100, 34), (100, 7)]
    expected = b"".join(
        dump_record(to_record(session, message))
        for session, messages in sessions.items()
        for message in messages
    )
    assert path.read_bytes() == expected


def test_export_page_size_out_of_range_is_a_usage_error(cli: Cli, sqlite_url: str) -> None:
    """--page-size must be from 1 to 10,000 (what one page read may hold)."""
    result = cli("sessions", "export", sqlite_url, "--page-size", "10001")
    assert result.code == 2
    assert "expected a page size from 1 to 10,000, got '10001'" in result.err


def test_import_counts_new_messages_per_run_of_a_session(
    cli: Cli, sqlite_url: str, prefix: str
) -> None:
    """Lines of one session split by another's are all stored, in order, and counted once."""
    lines = [
        _record(f"{prefix}a", 0), _record(f"{prefix}b", 1), _record(f"{prefix}a", 2),
    ]  # fmt: skip
    result = cli("sessions", "import", sqlite_url, stdin=b"".join(lines))
    assert result.code == 0, result.err
    assert "imported 3 new messages" in result.err
    assert _ids(sqlite_url, prefix) == {f"{prefix}a": ["m0", "m2"], f"{prefix}b": ["m1"]}
