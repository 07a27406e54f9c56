"""`initiate_chats`' AutoGen parity: human input through resumable requests (on SQLite and
Redis, and in a second OS process), dict chat specs, a sender per chat, and cost."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memweave.errors import InvalidArgument, ModelError
from memweave.llm import ChatResponse, Usage
from memweave.messages import ChatMessage
from memweave.orchestration import (
    Agent,
    ChatResult,
    ChatSpec,
    CheckpointStore,
    InMemoryCheckpointStore,
    TerminateRun,
    UserInputRequest,
    checkpoint_store_from_url,
    initiate_chats,
)
from memweave.orchestration._chat_run import CHATS_WORKFLOW, HUMAN_INPUT_KEY
from memweave.providers import from_url
from memweave.providers.base import ChatHistoryProvider
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import redis_prefix_cleanup
from tests.orchestration._chat_workers import chats as worker_chats

ROOT = Path(__file__).resolve().parents[2]

Stores = tuple[ChatHistoryProvider, CheckpointStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """A history and a checkpoint store on SQLite (one temp file) or Redis (a fresh prefix,
    deleted afterwards)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chats.db'}"
        history, checkpoints = from_url(url), checkpoint_store_from_url(url)
        yield history, checkpoints
        await history.aclose()
        await checkpoints.aclose()
        return
    redis_url: str = request.getfixturevalue("redis_url")
    prefix = f"mwt-{uuid.uuid4().hex[:12]}"
    history = from_url(redis_url, namespace=prefix)
    checkpoints = checkpoint_store_from_url(redis_url, namespace=prefix)
    yield history, checkpoints
    await history.aclose()
    await checkpoints.aclose()
    await redis_prefix_cleanup(redis_url, prefix)


def agent(name: str, replies: Any = ()) -> Agent:
    """An agent on a scripted model (a list of replies, or a function)."""
    return Agent(name, ScriptedChatClient(replies if callable(replies) else list(replies)))


def calls_of(who: Agent) -> int:
    client = who.client
    assert isinstance(client, ScriptedChatClient)
    return len(client.requests)


def sid() -> str:
    return f"chat-{uuid.uuid4().hex}"


async def chat(stores: Stores, sender: Agent, specs: list[Any], **options: Any) -> list[ChatResult]:
    history, checkpoints = stores
    return await initiate_chats(sender, specs, history=history, checkpoints=checkpoints, **options)


def texts(result: ChatResult) -> list[tuple[str | None, str]]:
    return [(m.name, m.text) for m in result.chat_history]


def pending(result: ChatResult) -> UserInputRequest:
    assert result.request is not None
    return result.request


# -- when the human is asked ---------------------------------------------------------------------


async def test_initiate_chats_terminate_mode_asks_on_terminate(stores: Stores) -> None:
    """In "TERMINATE" mode the recipient's TERMINATE pauses the run with a request."""
    user, calc = agent("user"), agent("calc", ["Sum: 25. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (result,) = await chat(stores, user, [spec])
    request = pending(result)
    assert request.agent == "user"
    assert [m.text for m in request.messages] == ["Sum: 25. TERMINATE"]
    assert result.summary == ""
    assert texts(result) == [("user", "Sum 14, 3, 8."), ("calc", "Sum: 25. TERMINATE")]


async def test_initiate_chats_terminate_mode_asks_when_max_turns_is_reached(
    stores: Stores,
) -> None:
    """In "TERMINATE" mode the sender's model replies mid-chat, and the human is asked once
    `max_turns` is reached."""
    user, calc = agent("user", ["And now?"]), agent("calc", ["25.", "Still 25."])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=2, session_id=sid())
    (result,) = await chat(stores, user, [spec], human_input_mode="TERMINATE")
    assert pending(result).messages[-1].text == "Still 25."
    assert texts(result)[-2:] == [("user", "And now?"), ("calc", "Still 25.")]
    assert calls_of(user) == 1


async def test_initiate_chats_always_mode_asks_before_every_sender_turn(stores: Stores) -> None:
    """In "ALWAYS" mode every recipient answer is followed by a request, and the sender's
    model is not called while the human answers."""
    user, calc = agent("user"), agent("calc", ["25.", "30.", "35."])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=5, session_id=sid())
    asked: list[str] = []
    answers: dict[str, str] = {}
    for reply in ("Add 5.", "Add 5 again.", "exit"):
        (result,) = await chat(stores, user, [spec], human_input_mode="ALWAYS", responses=answers)
        asked.append(pending(result).messages[-1].text)
        answers = {pending(result).request_id: reply}
    (done,) = await chat(stores, user, [spec], human_input_mode="ALWAYS", responses=answers)
    assert asked == ["25.", "30.", "35."]
    assert done.request is None
    assert calls_of(user) == 0


async def test_initiate_chats_never_mode_asks_nothing(stores: Stores) -> None:
    """In "NEVER" mode (the default) a chat runs to its end without a request."""
    user, calc = agent("user", ["Thanks."]), agent("calc", ["25.", "Bye. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid())
    (result,) = await chat(stores, user, [spec])
    assert result.request is None
    assert result.summary == "Bye."


# -- what the answers do -------------------------------------------------------------------------


async def test_initiate_chats_human_text_is_the_senders_message(stores: Stores) -> None:
    """A text answer is stored as the sender's message, marked as human input under the
    request id, and the recipient answers it as a user message."""
    history, _ = stores
    user, calc = agent("user"), agent("calc", ["25. TERMINATE", "30. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (first,) = await chat(stores, user, [spec])
    rid = pending(first).request_id
    (second,) = await chat(stores, user, [spec], responses={rid: "Also add 5."})
    stored = await history.list_messages(spec.session_id or "")
    human = stored[2]
    assert (human.id, human.role, human.name, human.text) == (
        rid,
        "assistant",
        "user",
        "Also add 5.",
    )
    assert human.metadata[HUMAN_INPUT_KEY] == {"request_id": rid}
    seen = calc.client.requests[-1].messages[-1]  # type: ignore[attr-defined]
    assert (seen.role, seen.text) == ("user", "Also add 5.")
    assert pending(second).messages[-1].text == "30. TERMINATE"


async def test_initiate_chats_empty_answer_lets_the_senders_model_reply(stores: Stores) -> None:
    """An empty answer where the chat would go on lets the sender's model reply."""
    user, calc = agent("user", ["What about 5?"]), agent("calc", ["25.", "30. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=3, session_id=sid())
    (first,) = await chat(stores, user, [spec], human_input_mode="ALWAYS")
    rid = pending(first).request_id
    (second,) = await chat(stores, user, [spec], human_input_mode="ALWAYS", responses={rid: ""})
    assert texts(second)[2:] == [("user", "What about 5?"), ("calc", "30. TERMINATE")]
    assert calls_of(user) == 1


async def test_initiate_chats_empty_answer_ends_a_chat_that_would_end(stores: Stores) -> None:
    """An empty answer after a TERMINATE ends the chat, which is then summarised."""
    user, calc = agent("user"), agent("calc", ["Sum: 25. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (first,) = await chat(stores, user, [spec])
    (done,) = await chat(stores, user, [spec], responses={pending(first).request_id: ""})
    assert done.request is None
    assert done.summary == "Sum: 25."
    assert len(done.chat_history) == 2


@pytest.mark.parametrize("answer", ["exit", TerminateRun()], ids=["exit", "terminate"])
async def test_initiate_chats_exit_ends_the_chat(stores: Stores, answer: Any) -> None:
    """`"exit"` or `request.terminate()` ends a chat that would otherwise go on."""
    user, calc = agent("user"), agent("calc", ["25."])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=4, session_id=sid())
    (first,) = await chat(stores, user, [spec], human_input_mode="ALWAYS")
    rid = pending(first).request_id
    (done,) = await chat(stores, user, [spec], human_input_mode="ALWAYS", responses={rid: answer})
    assert done.request is None
    assert done.summary == "25."
    assert calls_of(user) == 0


async def test_initiate_chats_human_text_goes_on_past_max_turns(stores: Stores) -> None:
    """Text answered when `max_turns` is reached gets one more answer from the recipient."""
    user, calc = agent("user"), agent("calc", ["25.", "30."])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=1, session_id=sid())
    (first,) = await chat(stores, user, [spec], human_input_mode="TERMINATE")
    rid = pending(first).request_id
    (second,) = await chat(
        stores, user, [spec], human_input_mode="TERMINATE", responses={rid: "Add 5."}
    )
    assert texts(second)[-2:] == [("user", "Add 5."), ("calc", "30.")]
    assert pending(second).request_id != rid


# -- resuming ------------------------------------------------------------------------------------


async def test_initiate_chats_an_ended_chat_stays_ended(stores: Stores) -> None:
    """A chat the human ended is rebuilt, not asked about again, when the chats run again."""
    user, calc = agent("user"), agent("calc", ["Sum: 25. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (first,) = await chat(stores, user, [spec])
    await chat(stores, user, [spec], responses={pending(first).request_id: ""})
    (again,) = await chat(stores, user, [spec])
    assert again.request is None
    assert again.summary == "Sum: 25."
    assert calls_of(calc) == 1


async def test_initiate_chats_a_pause_is_asked_again_with_the_same_id(stores: Stores) -> None:
    """Running paused chats again without an answer asks the same question, same id."""
    _, checkpoints = stores
    user, calc = agent("user"), agent("calc", ["Sum: 25. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (first,) = await chat(stores, user, [spec])
    (again,) = await chat(stores, user, [spec])
    assert pending(again) == pending(first)
    saved = await checkpoints.get_checkpoint(CHATS_WORKFLOW, spec.session_id or "")
    assert saved is not None
    assert (saved.status, [p.request_id for p in saved.pending]) == (
        "waiting",
        [pending(first).request_id],
    )


async def test_initiate_chats_an_auto_reply_choice_survives_a_failed_model_call(
    stores: Stores,
) -> None:
    """After an empty answer the sender's model replies; when that call fails, running the
    chats again retries it without asking the human again."""
    down = [True]

    def user_model(messages: Any, tools: Any, options: Any) -> str:
        if down[0]:
            raise ModelError("down")
        return "What about 5?"

    user, calc = agent("user", user_model), agent("calc", ["25.", "30. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", max_turns=3, session_id=sid())
    (first,) = await chat(stores, user, [spec], human_input_mode="ALWAYS")
    with pytest.raises(ModelError):
        await chat(
            stores,
            user,
            [spec],
            human_input_mode="ALWAYS",
            responses={first.request.request_id: ""},  # type: ignore[union-attr]
        )
    down[0] = False
    (second,) = await chat(stores, user, [spec], human_input_mode="ALWAYS")
    assert texts(second)[2:] == [("user", "What about 5?"), ("calc", "30. TERMINATE")]


async def test_initiate_chats_an_answer_given_again_is_ignored(stores: Stores) -> None:
    """Retrying a call with an answer already applied stores nothing twice and raises
    nothing."""
    history, _ = stores
    user, calc = agent("user"), agent("calc", ["25. TERMINATE", "30. TERMINATE"])
    spec = ChatSpec(calc, "Sum 14, 3, 8.", session_id=sid(), human_input_mode="TERMINATE")
    (first,) = await chat(stores, user, [spec])
    answer = {pending(first).request_id: "Also add 5."}
    (second,) = await chat(stores, user, [spec], responses=answer)
    (retried,) = await chat(stores, user, [spec], responses=answer)
    assert pending(retried) == pending(second)
    assert await history.count_messages(spec.session_id or "") == 4


async def test_initiate_chats_later_chats_wait_for_a_paused_one(stores: Stores) -> None:
    """A paused chat is the last result; the chats after it run once it is answered, with
    its summary as carryover."""
    user = agent("user")
    calc, analyst = agent("calc", ["Sum: 25. TERMINATE"]), agent("analyst", ["Big. TERMINATE"])
    session = sid()
    specs = [
        ChatSpec(calc, "Sum 14, 3, 8.", session_id=f"{session}-0", human_input_mode="TERMINATE"),
        ChatSpec(analyst, "Comment.", session_id=f"{session}-1"),
    ]
    paused = await chat(stores, user, specs)
    assert len(paused) == 1
    assert calls_of(analyst) == 0
    _, second = await chat(stores, user, specs, responses={pending(paused[0]).request_id: ""})
    assert second.carryover == ("Sum: 25.",)
    assert second.summary == "Big."


def run_worker(url: str, prefix: str, session: str, responses: dict[str, str]) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.orchestration._chat_workers",
            url,
            prefix,
            session,
            json.dumps(responses),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def check_resumed_in_other_processes(url: str, prefix: str) -> None:
    session = sid()
    first = run_worker(url, prefix, session, {})
    (paused,) = first["results"]
    assert paused["history"][-1] == ["calc", "Sum: 25. TERMINATE"]
    second = run_worker(url, prefix, session, {paused["request_id"]: "Also add 5."})
    (again,) = second["results"]
    assert again["history"][-2:] == [["user", "Also add 5."], ["calc", "30. TERMINATE"]]
    assert second["calls"]["calc"] == 1
    third = run_worker(url, prefix, session, {again["request_id"]: ""})
    ended, analysed = third["results"]
    assert ended["summary"] == "30."
    assert analysed["carryover"] == ["30."]
    assert analysed["summary"] == "A big number."
    assert third["calls"] == {"user": 0, "calc": 0, "analyst": 1}
    # The human's decision to end chat 0 was checkpointed: this process asks nothing.
    specs, clients = worker_chats(session)
    options = {"namespace": prefix} if url.startswith("redis") else {}
    async with (
        from_url(url, **options) as history,
        checkpoint_store_from_url(url, **options) as checkpoints,
    ):
        results = await initiate_chats(
            Agent("user", clients["user"]), specs, history=history, checkpoints=checkpoints
        )
    assert [r.summary for r in results] == ["30.", "A big number."]
    assert sum(len(c.requests) for c in clients.values()) == 0


async def test_initiate_chats_resumes_in_other_processes_on_sqlite(tmp_path: Path) -> None:
    """Paused, answered and finished in three processes, on a SQLite file."""
    await check_resumed_in_other_processes(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", "unused")


@pytest.mark.xdist_group("redis")
async def test_initiate_chats_resumes_in_other_processes_on_redis(redis_url: str) -> None:
    """Paused, answered and finished in three processes, on Redis."""
    prefix = f"mwt-{uuid.uuid4().hex[:12]}"
    try:
        await check_resumed_in_other_processes(redis_url, prefix)
    finally:
        await redis_prefix_cleanup(redis_url, prefix)


@settings(max_examples=25, deadline=None)
@given(answers=st.lists(st.sampled_from(["", "more", "exit"]), min_size=1, max_size=6))
async def test_initiate_chats_answers_one_call_at_a_time_store_each_message_once(
    answers: list[str],
) -> None:
    """Whatever the human answers, one call at a time: each question is asked once, every
    human text is stored once under its request id, and "exit" ends the chat."""
    history, checkpoints = InMemoryChatHistoryProvider(), InMemoryCheckpointStore()
    user = agent("user", lambda messages, tools, options: "auto")
    calc = agent("calc", lambda messages, tools, options: f"n{len(messages)}")
    spec = ChatSpec(calc, "Count.", max_turns=3, session_id="s")
    asked: list[str] = []
    applied: list[str] = []
    responses: dict[str, str] = {}
    for step in range(len(answers) + 1):
        (result,) = await initiate_chats(
            user,
            [spec],
            history=history,
            checkpoints=checkpoints,
            human_input_mode="ALWAYS",
            responses=responses,
        )
        if result.request is None or step == len(answers):
            break
        asked.append(result.request.request_id)
        applied.append(answers[step])
        responses = {result.request.request_id: answers[step]}
    stored = await history.list_messages("s")
    assert len(set(asked)) == len(asked)
    assert len({m.id for m in stored}) == len(stored)
    human = [m.id for m in stored if HUMAN_INPUT_KEY in m.metadata]
    assert human == [rid for rid, answer in zip(asked, applied, strict=True) if answer == "more"]
    if "exit" in applied:
        assert applied.index("exit") == len(applied) - 1
        (final,) = await initiate_chats(
            user, [spec], history=history, checkpoints=checkpoints, human_input_mode="ALWAYS"
        )
        assert final.request is None


# -- checks before any chat runs -----------------------------------------------------------------


async def test_initiate_chats_human_input_needs_a_checkpoint_store() -> None:
    """Human input without `checkpoints` is refused before any model is called."""
    user, calc = agent("user"), agent("calc")
    with pytest.raises(InvalidArgument, match="checkpoints"):
        await initiate_chats(
            user, [ChatSpec(calc, "hi", session_id="s")], human_input_mode="TERMINATE"
        )


async def test_initiate_chats_human_input_needs_session_ids() -> None:
    """With human input every chat needs a session id, so a paused run can resume."""
    user, calc = agent("user"), agent("calc")
    with pytest.raises(InvalidArgument, match=r"chats\[1\].session_id"):
        await initiate_chats(
            user,
            [ChatSpec(calc, "a", session_id="s"), ChatSpec(calc, "b")],
            checkpoints=InMemoryCheckpointStore(),
            human_input_mode="ALWAYS",
        )


async def test_initiate_chats_unknown_response_id_is_invalid_argument() -> None:
    """A response under an id no chat asked raises `InvalidArgument` naming it."""
    user, calc = agent("user"), agent("calc", ["25. TERMINATE"])
    with pytest.raises(InvalidArgument, match="nope"):
        await initiate_chats(
            user,
            [ChatSpec(calc, "a", session_id="s")],
            checkpoints=InMemoryCheckpointStore(),
            human_input_mode="TERMINATE",
            responses={"nope": "hi"},
        )


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"human_input_mode": "SOMETIMES"}, "human_input_mode"),
        ({"responses": {"r": 42}}, r"responses\['r'\]"),
        ({"responses": {"r": "hi"}}, "no chat asks"),
    ],
)
async def test_initiate_chats_bad_human_input_options_are_invalid(
    options: dict[str, Any], where: str
) -> None:
    """A bad mode, a bad answer, or answers without human input raise `InvalidArgument`."""
    user, calc = agent("user"), agent("calc")
    with pytest.raises(InvalidArgument, match=where):
        await initiate_chats(user, [ChatSpec(calc, "a", session_id="s")], **options)


# -- dict specs, senders, cost -------------------------------------------------------------------


async def test_initiate_chats_accepts_autogen_dict_specs(stores: Stores) -> None:
    """AutoGen-style dicts are chat specs, with `summary_args` and the carryover exclusions."""
    user = agent("user", ["Sum is 25."])
    calc, analyst = agent("calc", ["25. TERMINATE"]), agent("analyst", ["Big. TERMINATE"])
    session = sid()
    first, second = await chat(
        stores,
        user,
        [
            {
                "recipient": calc,
                "message": "Sum 14, 3, 8.",
                "max_turns": 1,
                "summary_method": "reflection_with_llm",
                "summary_args": {"summary_prompt": "One line."},
                "session_id": f"{session}-0",
                "silent": True,
            },
            {
                "recipient": analyst,
                "message": "Comment.",
                "carryover": "Numbers: 14, 3, 8",
                "finished_chat_indexes_to_exclude_from_carryover": [0],
                "session_id": f"{session}-1",
            },
        ],
    )
    assert user.client.requests[0].messages[-1].text == "One line."  # type: ignore[attr-defined]
    assert first.summary == "Sum is 25."
    assert second.carryover == ("Numbers: 14, 3, 8",)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"message": "hi", "clear_history": False}, r"chats\[0\]\['clear_history'\]"),
        ({"message": "hi"}, "needs the key 'recipient'"),
        ({"max_turns": 0, "message": "hi"}, r"chats\[0\].max_turns"),
        ({"message": "hi", "summary_args": {"x": 1}}, "summary_args"),
        (
            {
                "message": "hi",
                "carryover_from": [],
                "finished_chat_indexes_to_exclude_from_carryover": [],
            },
            "either",
        ),
    ],
)
async def test_initiate_chats_bad_dict_spec_names_the_key(spec: dict[str, Any], where: str) -> None:
    """A dict with an unknown or missing key, or a bad value, raises `InvalidArgument`
    naming it, before any model is called."""
    calc = agent("calc")
    if "recipient" not in where:
        spec = {"recipient": calc, **spec}
    with pytest.raises(InvalidArgument, match=where):
        await initiate_chats(agent("user"), [spec])
    assert calls_of(calc) == 0


async def test_initiate_chats_each_chat_may_have_its_own_sender(stores: Stores) -> None:
    """`sender` on a chat opens it instead of the default sender; with none given to
    `initiate_chats`, every chat names its own."""
    alice, bob = agent("alice", ["From alice."]), agent("bob")
    calc = agent("calc", ["25.", "30. TERMINATE", "Done. TERMINATE"])
    session = sid()
    first, second = await chat(
        stores,
        None,  # type: ignore[arg-type]
        [
            ChatSpec(calc, "Sum.", sender=alice, max_turns=2, session_id=f"{session}-0"),
            {"recipient": calc, "message": "Again.", "sender": bob, "session_id": f"{session}-1"},
        ],
    )
    assert [m.name for m in first.chat_history] == ["alice", "calc", "alice", "calc"]
    assert second.chat_history[0].name == "bob"


async def test_initiate_chats_without_any_sender_is_invalid() -> None:
    """A chat with no sender of its own and none given to `initiate_chats` is refused."""
    with pytest.raises(InvalidArgument, match=r"chats\[0\].sender"):
        await initiate_chats(None, [ChatSpec(agent("calc"), "hi")])


def priced(text: str, cost: float) -> ChatResponse:
    """A reply whose client reported a cost."""
    usage = Usage(prompt_tokens=10, completion_tokens=2, cost=cost)
    return ChatResponse(message=ChatMessage.assistant(text), usage=usage)


async def test_initiate_chats_cost_adds_up_the_reported_costs(stores: Stores) -> None:
    """`ChatResult.cost` is the sum of what the chat's model calls cost, summary included."""
    user = agent("user", [priced("More?", 0.25), priced("Summary.", 0.5)])
    calc = agent("calc", [priced("25.", 1.0), priced("30. TERMINATE", 2.0)])
    spec = ChatSpec(calc, "Sum.", summary_method="reflection_with_llm", session_id=sid())
    (result,) = await chat(stores, user, [spec])
    assert result.cost == pytest.approx(3.75)
    assert result.usage.total_tokens == 48


async def test_initiate_chats_cost_is_none_without_prices(stores: Stores) -> None:
    """Without prices a chat's cost is unknown (None), not zero."""
    user, calc = agent("user"), agent("calc", ["25. TERMINATE"])
    (result,) = await chat(stores, user, [ChatSpec(calc, "Sum.", session_id=sid())])
    assert result.cost is None


def test_sync_initiate_chats_pauses_and_resumes_with_blocking_agents(tmp_path: Path) -> None:
    """The blocking face takes dict specs naming blocking agents, and pauses and resumes as
    the async one does."""
    from memweave import sync

    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}"
    user = sync.Agent("user", ScriptedChatClient([]))
    calc = sync.Agent("calc", ScriptedChatClient(["Sum: 25. TERMINATE"]))
    chats = [{"recipient": calc, "message": "Sum 14, 3, 8.", "sender": user, "session_id": "s"}]
    with sync.from_url(url) as history, sync.checkpoint_store_from_url(url) as checkpoints:
        options: dict[str, Any] = {
            "history": history,
            "checkpoints": checkpoints,
            "human_input_mode": "TERMINATE",
        }
        (paused,) = sync.initiate_chats(None, chats, **options)
        rid = pending(paused).request_id
        (done,) = sync.initiate_chats(None, chats, responses={rid: ""}, **options)
    assert done.request is None
    assert done.summary == "Sum: 25."
