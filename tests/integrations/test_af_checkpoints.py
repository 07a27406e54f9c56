"""`MemweaveCheckpointStorage`: Agent Framework's own workflows checkpoint to memweave.

The clauses run on SQLite, PostgreSQL, MariaDB and Redis; a real `HandoffBuilder` workflow
paused on a user-input request resumes in a second OS process on SQLite and Redis. Run as
`python -m tests.integrations.test_af_checkpoints '<json>'`, this module is that process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agent_framework import (
    Agent,
    InMemoryCheckpointStorage,
    WorkflowCheckpoint,
    WorkflowCheckpointException,
)
from agent_framework_orchestrations import (
    HandoffAgentUserRequest,
    HandoffBuilder,
    SequentialBuilder,
)
from hypothesis import given
from hypothesis import strategies as st

from memweave.errors import BackendUnavailable
from memweave.integrations._af_checkpoint_codec import CheckpointCodec, DecodeError
from memweave.integrations.agent_framework import (
    CheckpointNotFound,
    CorruptWorkflowCheckpoint,
    MemweaveCheckpointStorage,
    UnstorableCheckpoint,
)
from memweave.messages import ChatMessage, ToolCall
from tests.conftest import service_unavailable
from tests.integrations._af_support import ScriptedAFChatClient

ROOT = Path(__file__).resolve().parents[2]
URLS = {
    "postgres": os.environ.get(
        "MEMWEAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("MEMWEAVE_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}

# -- the workflow: a triage agent hands off to an order agent, which asks the user -------------


def triage_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Triage: hand every new question to the order agent."""
    if messages[-1].role == "tool":
        return "I'll connect you with our order specialist."
    names = [tool["function"]["name"] for tool in tools or ()]
    [handoff] = [name for name in names if "order_agent" in name]
    return ChatMessage.assistant(tool_calls=[ToolCall(id="call-1", name=handoff, arguments="{}")])


def order_model(messages: list[ChatMessage], tools: Any, options: Any) -> str:
    """The order agent: repeats what the user said so far, so a test can see its context."""
    said = [message.text for message in messages if message.role == "user"]
    return "ORDER SAW: " + " | ".join(said)


def build_workflow(storage: Any, name: str) -> Any:
    """The support workflow of Agent Framework's handoff guide, on scripted models."""
    triage = Agent(
        ScriptedAFChatClient(triage_model),
        "You are frontline support triage.",
        name="triage_agent",
        require_per_service_call_history_persistence=True,
    )
    order = Agent(
        ScriptedAFChatClient(order_model),
        "You handle order and shipping inquiries.",
        name="order_agent",
        require_per_service_call_history_persistence=True,
    )
    return (
        HandoffBuilder(name=name, participants=[triage, order], checkpoint_storage=storage)
        .with_start_agent(triage)
        .build()
    )


async def run_step(args: dict[str, Any]) -> dict[str, Any]:
    """One process's part: `start` runs until the user-input request; `resume` restores the
    latest checkpoint, answers it, and reports what the order agent said."""
    async with MemweaveCheckpointStorage.from_url(args["url"]) as storage:
        workflow = build_workflow(storage, args["workflow"])
        if args["step"] == "start":
            events = [event async for event in workflow.run(args["input"], stream=True)]
        else:
            latest = await storage.get_latest(workflow_name=args["workflow"])
            assert latest is not None
            events = [
                event
                async for event in workflow.run(checkpoint_id=latest.checkpoint_id, stream=True)
            ]
            answers = {
                event.request_id: HandoffAgentUserRequest.create_response(args["input"])
                for event in events
                if event.type == "request_info"
            }
            events = [event async for event in workflow.run(responses=answers, stream=True)]
        said = [
            message.text
            for event in events
            if event.type == "request_info" and isinstance(event.data, HandoffAgentUserRequest)
            for message in event.data.agent_response.messages
        ]
        return {"requests": sum(event.type == "request_info" for event in events), "said": said}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.xdist_group("postgres")),
        pytest.param("mysql", marks=pytest.mark.xdist_group("mysql")),
        pytest.param("redis", marks=pytest.mark.xdist_group("redis")),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of one backend: a SQLite file of the test, or a shared server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'checkpoints.db'}"
    return URLS[str(request.param)]


@pytest.fixture
def workflow_name() -> str:
    """A workflow name no other test, run or worker uses."""
    return f"mwt-af-{uuid.uuid4().hex}"


@pytest.fixture
async def storage(url: str, workflow_name: str) -> AsyncIterator[MemweaveCheckpointStorage]:
    """The storage; at teardown the test's workflows lose every checkpoint."""
    made = MemweaveCheckpointStorage.from_url(url)
    try:
        await asyncio.wait_for(made.list_checkpoint_ids(workflow_name="mwt-ping"), timeout=15)
    except (BackendUnavailable, TimeoutError) as exc:
        await made.aclose()
        service_unavailable(url, f"{type(exc).__name__}: {exc}")
    yield made
    for name in (workflow_name, workflow_name + "-other", workflow_name + ":|{}%_.X"):
        for checkpoint_id in await made.list_checkpoint_ids(workflow_name=name):
            await made.delete(checkpoint_id)
    await made.aclose()


@pytest.fixture(scope="module")
def handoff_checkpoints() -> list[WorkflowCheckpoint]:
    """Real checkpoints of the handoff workflow paused on its user-input request."""

    async def run() -> list[WorkflowCheckpoint]:
        memory = InMemoryCheckpointStorage()
        workflow = build_workflow(memory, "support")
        _ = [event async for event in workflow.run("My order 1234 arrived damaged", stream=True)]
        return await memory.list_checkpoints(workflow_name="support")

    return asyncio.run(run())


def renamed(checkpoint: WorkflowCheckpoint, name: str, **changes: Any) -> WorkflowCheckpoint:
    """A copy of `checkpoint` under another workflow name (and other changes)."""
    return dataclasses.replace(checkpoint, workflow_name=name, **changes)


def encoded(checkpoint: WorkflowCheckpoint) -> Any:
    return CheckpointCodec().encode(checkpoint.to_dict())


# -- the storage clauses --------------------------------------------------------------------------


async def test_save_then_load_round_trips_a_handoff_checkpoint(
    storage: MemweaveCheckpointStorage,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """Every checkpoint of a paused handoff loads back equal, request and agent state included."""
    for checkpoint in handoff_checkpoints:
        original = renamed(checkpoint, workflow_name)
        assert await storage.save(original) == original.checkpoint_id
        loaded = await storage.load(original.checkpoint_id)
        assert encoded(loaded) == encoded(original)
    [pending] = loaded.pending_request_info_events.values()
    assert isinstance(pending.data, HandoffAgentUserRequest)


async def test_list_and_latest_follow_timestamps_and_lineage(
    storage: MemweaveCheckpointStorage,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """Checkpoints list oldest first; the latest is the newest one no tie names as parent."""
    base = handoff_checkpoints[0]
    when = "2030-01-01T00:00:00+00:00"
    first = renamed(base, workflow_name, checkpoint_id="b-first", timestamp="2029-01-01T00:00:00")
    parent = renamed(base, workflow_name, checkpoint_id="z-parent", timestamp=when)
    child = renamed(
        base,
        workflow_name,
        checkpoint_id="a-child",
        timestamp=when,
        previous_checkpoint_id="z-parent",
    )
    for checkpoint in (child, parent, first):
        await storage.save(checkpoint)
    ids = await storage.list_checkpoint_ids(workflow_name=workflow_name)
    assert ids[0] == "b-first"
    assert sorted(ids[1:]) == ["a-child", "z-parent"]
    listed = await storage.list_checkpoints(workflow_name=workflow_name)
    assert [checkpoint.checkpoint_id for checkpoint in listed] == ids
    latest = await storage.get_latest(workflow_name=workflow_name)
    assert latest is not None
    assert latest.checkpoint_id == "a-child"


async def test_workflows_with_hostile_names_are_isolated(
    storage: MemweaveCheckpointStorage,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """Checkpoints of one workflow never show up under another, whatever the names hold."""
    hostile = workflow_name + ":|{}%_.X"
    await storage.save(renamed(handoff_checkpoints[0], hostile, checkpoint_id="h:|{}%_"))
    await storage.save(renamed(handoff_checkpoints[1], workflow_name, checkpoint_id="plain"))
    assert await storage.list_checkpoint_ids(workflow_name=hostile) == ["h:|{}%_"]
    assert await storage.list_checkpoint_ids(workflow_name=workflow_name) == ["plain"]
    assert await storage.list_checkpoint_ids(workflow_name=hostile.lower()) == []
    assert (await storage.load("h:|{}%_")).workflow_name == hostile


async def test_save_again_replaces_and_moves_between_workflows(
    storage: MemweaveCheckpointStorage,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """Saving an id again replaces that checkpoint, also when its workflow changed."""
    other = workflow_name + "-other"
    await storage.save(renamed(handoff_checkpoints[0], workflow_name, checkpoint_id="one"))
    await storage.save(renamed(handoff_checkpoints[1], other, checkpoint_id="one"))
    assert await storage.list_checkpoint_ids(workflow_name=workflow_name) == []
    assert await storage.list_checkpoint_ids(workflow_name=other) == ["one"]
    loaded = await storage.load("one")
    assert loaded.iteration_count == handoff_checkpoints[1].iteration_count


async def test_delete_reports_whether_the_checkpoint_existed(
    storage: MemweaveCheckpointStorage,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """`delete` removes a checkpoint and says True; an unknown id says False."""
    checkpoint = renamed(handoff_checkpoints[0], workflow_name)
    await storage.save(checkpoint)
    assert await storage.delete(checkpoint.checkpoint_id) is True
    assert await storage.delete(checkpoint.checkpoint_id) is False
    assert await storage.get_latest(workflow_name=workflow_name) is None


async def test_load_of_an_unknown_id_raises_the_framework_error(
    storage: MemweaveCheckpointStorage,
) -> None:
    """Loading an id nobody saved raises `CheckpointNotFound`, an AF checkpoint error too."""
    with pytest.raises(CheckpointNotFound) as raised:
        await storage.load(f"missing-{uuid.uuid4().hex}")
    assert isinstance(raised.value, WorkflowCheckpointException)


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_storage_on_a_caller_engine_or_client_leaves_it_open(
    storage: MemweaveCheckpointStorage,
    url: str,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """A storage built on the caller's engine or client works and leaves it open when closed."""
    if url.startswith("redis"):
        from redis.asyncio import Redis

        client: Any = Redis.from_url(url)
        given = MemweaveCheckpointStorage(client=client)
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        client = create_async_engine(url)
        given = MemweaveCheckpointStorage(client=client)
    checkpoint = renamed(handoff_checkpoints[0], workflow_name)
    await given.save(checkpoint)
    await given.aclose()
    assert (await storage.load(checkpoint.checkpoint_id)).workflow_name == workflow_name
    if url.startswith("redis"):
        assert await client.ping()
        await client.aclose()
    else:
        await client.dispose()


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_namespace_keeps_storages_apart_and_old_names_reach_it(
    url: str, workflow_name: str, handoff_checkpoints: list[WorkflowCheckpoint]
) -> None:
    """Storages in different namespaces share nothing; the deprecated `prefix=` or
    `table_prefix=` (and `engine=`) warn and name the namespace's keys or table as given."""
    namespace = f"mwt_af_{uuid.uuid4().hex[:10]}"
    redis = url.startswith("redis")
    old_option = {"prefix": namespace} if redis else {"table_prefix": f"{namespace}_"}
    checkpoint = renamed(handoff_checkpoints[0], workflow_name)
    async with (
        MemweaveCheckpointStorage.from_url(url, namespace=namespace) as named,
        MemweaveCheckpointStorage.from_url(url) as default,
    ):
        await named.save(checkpoint)
        assert await default.list_checkpoint_ids(workflow_name=workflow_name) == []
        with pytest.warns(DeprecationWarning, match="prefix"):
            old = MemweaveCheckpointStorage.from_url(url, **old_option)
        async with old:
            assert await old.list_checkpoint_ids(workflow_name=workflow_name) == [
                checkpoint.checkpoint_id
            ]
        await named.delete(checkpoint.checkpoint_id)
    if not redis:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            with pytest.warns(DeprecationWarning, match="engine"):
                old = MemweaveCheckpointStorage(engine=engine, namespace=namespace)
            async with old:
                await old.save(checkpoint)
            async with engine.connect() as conn:
                query = text(f"SELECT count(*) FROM {namespace}_af_checkpoints")
                assert (await conn.execute(query)).scalar() == 1
        finally:
            await engine.dispose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "redis://127.0.0.1:1/0", "namespace": "a{b}"}, "namespace"),
        ({"url": "sqlite+aiosqlite:///x.db", "namespace": "a-b"}, "namespace"),
        ({"url": "redis://127.0.0.1:1/0", "namespace": "a", "prefix": "a"}, "namespace= only"),
        ({"url": "sqlite+aiosqlite:///x.db", "client": object()}, "one of url and client"),
        ({}, "a url or client"),
    ],
)
def test_storage_rejects_bad_names(options: dict[str, Any], message: str) -> None:
    """A namespace the backend cannot use, a new option with its deprecated name, or a URL
    and a client, raise `ConfigurationError` saying which."""
    from memweave.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        MemweaveCheckpointStorage(**options)


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
async def test_save_refuses_a_value_outside_the_allowlist(
    storage: MemweaveCheckpointStorage,
    url: str,
    workflow_name: str,
    handoff_checkpoints: list[WorkflowCheckpoint],
) -> None:
    """A checkpoint holding an unregistered class is refused at save, naming where it is."""

    @dataclasses.dataclass
    class Private:
        secret: str

    state = {**handoff_checkpoints[0].state, "mine": [Private("x")]}
    checkpoint = renamed(handoff_checkpoints[0], workflow_name, state=state)
    with pytest.raises(UnstorableCheckpoint) as raised:
        await storage.save(checkpoint)
    assert raised.value.path == "$.state.mine[0]"
    assert await storage.list_checkpoint_ids(workflow_name=workflow_name) == []
    allowed = MemweaveCheckpointStorage.from_url(url, allowed_checkpoint_types=[Private])
    try:
        await allowed.save(checkpoint)
        assert (await allowed.load(checkpoint.checkpoint_id)).state["mine"] == [Private("x")]
    finally:
        await allowed.aclose()


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_load_refuses_a_stored_type_outside_the_allowlist(
    storage: MemweaveCheckpointStorage, workflow_name: str
) -> None:
    """A stored document naming a class off the allowlist is reported corrupt, never built."""
    from memweave.integrations._af_checkpoint_backends import StoredCheckpoint

    forged = {
        "v": 1,
        "checkpoint_id": "forged",
        "workflow_name": workflow_name,
        "checkpoint": {
            "workflow_name": workflow_name,
            "graph_signature_hash": "x",
            "checkpoint_id": "forged",
            "state": {"$mw": "obj", "type": "subprocess:Popen", "data": {"args": ["true"]}},
        },
    }
    await storage._backend.save(
        StoredCheckpoint("forged", workflow_name, 0.0, json.dumps(forged).encode())
    )
    with pytest.raises(CorruptWorkflowCheckpoint) as raised:
        await storage.load("forged")
    assert "subprocess:Popen is not on the allowlist" in str(raised.value)


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
async def test_sequential_workflow_restores_from_a_stored_checkpoint(
    storage: MemweaveCheckpointStorage, workflow_name: str
) -> None:
    """AF's `SequentialBuilder` checkpoints to memweave and runs on from a stored checkpoint."""
    writer = Agent(ScriptedAFChatClient(["A first draft."] * 2), "Write.", name="writer")
    reviewer = Agent(ScriptedAFChatClient(["Looks good."] * 2), "Review.", name="reviewer")
    workflow = SequentialBuilder(
        participants=[writer, reviewer], checkpoint_storage=storage
    ).build()
    _ = [event async for event in workflow.run("Write a haiku", stream=True)]
    ids = await storage.list_checkpoint_ids(workflow_name=workflow.name)
    try:
        assert len(ids) >= 2
        outputs = [
            event
            async for event in workflow.run(checkpoint_id=ids[1], stream=True)
            if event.type == "output"
        ]
        assert outputs
    finally:
        for checkpoint_id in await storage.list_checkpoint_ids(workflow_name=workflow.name):
            await storage.delete(checkpoint_id)


# -- a new process ---------------------------------------------------------------------------------


def in_new_process(args: dict[str, Any]) -> dict[str, Any]:
    """Run `run_step(args)` in a fresh Python process; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integrations.test_af_checkpoints", json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_handoff_paused_on_user_input_resumes_in_a_new_process(
    storage: MemweaveCheckpointStorage, url: str, workflow_name: str
) -> None:
    """A HandoffBuilder workflow paused on a user request here resumes in another process."""
    base = {"url": url, "workflow": workflow_name}
    first = await run_step({**base, "step": "start", "input": "My order 1234 arrived damaged"})
    assert first["requests"] == 1
    assert first["said"][-1] == "ORDER SAW: My order 1234 arrived damaged"
    second = await asyncio.to_thread(
        in_new_process, {**base, "step": "resume", "input": "I'd like a refund"}
    )
    assert second["said"][-1] == "ORDER SAW: My order 1234 arrived damaged | I'd like a refund"


# -- the codec ------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4) | st.sampled_from(["$mw", "type"]), inner, max_size=3),
        st.dictionaries(st.integers(), inner, max_size=2),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)


@given(value=values)
def test_codec_round_trips_plain_values_exactly(value: Any) -> None:
    """What the codec writes is JSON, and reads back equal with the same types."""
    codec = CheckpointCodec()
    stored = json.loads(json.dumps(codec.encode(value), allow_nan=False))
    back = codec.decode(stored)
    assert back == value
    assert type(back) is type(value)


def test_codec_refuses_to_name_an_unknown_type_as_a_class() -> None:
    """A tagged type name outside the allowlist is refused before its module is imported."""
    with pytest.raises(DecodeError):
        CheckpointCodec().decode(
            {"$mw": "dataclass", "type": "not_a_module_xyz:Thing", "fields": {}}
        )
    assert "not_a_module_xyz" not in sys.modules
    assert Decimal("1.5") == CheckpointCodec().decode({"$mw": "decimal", "s": "1.5"})


def _main() -> None:
    print(json.dumps(asyncio.run(run_step(json.loads(sys.argv[1])))))


if __name__ == "__main__":
    _main()
