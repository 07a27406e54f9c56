"""Builders shared by the orchestration tests: tool calls, replies, recording doubles."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import openai

from memweave.context.base import Context, ContextProvider
from memweave.errors import BackendUnavailable
from memweave.llm import OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._views import HANDOFF_KEY, tag_messages
from memweave.orchestration.checkpoints import Checkpoint, InMemoryCheckpointStore
from memweave.providers.base import PageRow
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import Session


def call(name: str, call_id: str | None = None, **arguments: Any) -> ToolCall:
    """A tool call as a model would write it."""
    return ToolCall(
        id=call_id or f"call_{uuid.uuid4().hex[:8]}", name=name, arguments=json.dumps(arguments)
    )


def calls(*tool_calls: ToolCall, text: str = "") -> ChatMessage:
    """An assistant reply carrying `tool_calls` (and optional text)."""
    return ChatMessage.assistant(text, tool_calls=tool_calls)


def assert_no_orphans(conversation: Sequence[ChatMessage]) -> None:
    """Every tool call has exactly one result, right after its assistant message's group."""
    expected: set[str] = set()
    for message in conversation:
        if message.role == "assistant":
            assert not expected, f"calls {expected} have no result before the next reply"
            expected = {c.id for c in message.tool_calls}
        elif message.role == "tool":
            assert message.tool_call_id in expected, f"orphan result {message.tool_call_id}"
            expected.discard(message.tool_call_id)
        elif expected:
            raise AssertionError(f"calls {expected} are followed by a {message.role} message")
    assert not expected, f"calls {expected} have no result"


class RecordingProvider(ContextProvider):
    """A context provider that adds fixed context and records every hook call."""

    def __init__(
        self,
        source_id: str = "recorder",
        *,
        instructions: str | None = None,
        messages: Sequence[ChatMessage] = (),
        tools: Sequence[object] = (),
    ) -> None:
        self.source_id = source_id
        self.context = Context(
            instructions=instructions, messages=tuple(messages), tools=tuple(tools)
        )
        self.invoking_calls: list[list[ChatMessage]] = []
        self.invoked_calls: list[
            tuple[list[ChatMessage], list[ChatMessage], BaseException | None]
        ] = []

    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        self.invoking_calls.append(list(messages))
        session.state[self.source_id] = {"calls": len(self.invoking_calls)}
        return self.context

    async def invoked(
        self,
        session: Session,
        request_messages: Sequence[ChatMessage],
        response_messages: Sequence[ChatMessage],
        error: BaseException | None = None,
    ) -> None:
        self.invoked_calls.append((list(request_messages), list(response_messages), error))


class BatchRecordingHistory(InMemoryChatHistoryProvider):
    """An in-memory history that records every `add_messages` batch."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.batches: list[tuple[str, list[ChatMessage]]] = []

    async def add_messages(self, session_id: str, messages: Any) -> None:
        batch = list(messages)
        self.batches.append((session_id, batch))
        await super().add_messages(session_id, batch)


class ReadRecordingHistory(InMemoryChatHistoryProvider):
    """An in-memory history that records how it is read: each `list_messages` call, and how
    many stored entries its primitives returned."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reads: list[dict[str, Any]] = []
        """The keyword arguments of every `list_messages` call."""
        self.entries_read = 0
        """Stored entries returned by `_read` and `_read_page`."""
        self.whole_reads = 0
        """`_read` calls for a whole session."""

    async def list_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        reducer: ChatReducer | None = None,
    ) -> list[ChatMessage]:
        self.reads.append({"limit": limit, "before": before, "reducer": reducer})
        return await super().list_messages(session_id, limit=limit, before=before, reducer=reducer)

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        rows = await super()._read(session_id, limit)
        self.entries_read += len(rows)
        self.whole_reads += limit is None
        return rows

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        rows = await super()._read_page(session_id, after=after, before=before, limit=limit)
        self.entries_read += len(rows or ())
        return rows

    def forget_reads(self) -> None:
        """Start recording afresh (after a test stored its history)."""
        self.reads, self.entries_read, self.whole_reads = [], 0, 0


class IdentityReducer(ChatReducer):
    """Returns the history as it is. As a provider's read reducer it makes orchestrators read
    the whole session and reduce it in memory: the reference a windowed read must match."""

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        return list(messages)


def team_conversation(
    size: int,
    agents: Sequence[str] = ("a", "b"),
    *,
    seed: int = 0,
    strays: float = 0.0,
    late: float = 0.0,
) -> list[ChatMessage]:
    """A stored multi-agent conversation of about `size` messages: user turns, each agent's
    text and tool rounds, system messages and handoff notes. Its third message, and with
    probability `strays` any later one, is a tool result whose call is not stored (as a
    writer outside memweave may leave); with probability `late`, a message is a second
    result of an earlier call, away from it."""
    rng = random.Random(seed)
    made: list[tuple[str, str]] = []
    out: list[ChatMessage] = [ChatMessage.system("You are a team."), ChatMessage.user("hi")]
    out.extend(tag_messages([ChatMessage.tool("lost-2", "stray result")], agents[0]))
    while len(out) < size:
        roll = rng.random()
        agent = rng.choice(agents)
        n = len(out)
        if roll < strays:
            out.extend(tag_messages([ChatMessage.tool(f"lost-{n}", "stray result")], agent))
        elif made and rng.random() < late:
            call_id, caller = rng.choice(made)
            out.extend(tag_messages([ChatMessage.tool(call_id, f"late result {n}")], caller))
        elif roll < 0.3:
            out.append(ChatMessage.user(f"question {n} " + "word " * rng.randrange(1, 30)))
        elif roll < 0.55:
            found = [call("lookup", f"c{n}-{i}", q=n) for i in range(rng.randrange(1, 3))]
            reply = calls(*found, text=rng.choice(["", f"checking {n}"]))
            results = [ChatMessage.tool(c.id, f"result {n} " * rng.randrange(1, 20)) for c in found]
            out.extend(tag_messages([reply, *results], agent))
            made.extend((c.id, agent) for c in found)
        elif roll < 0.97:
            text = f"answer {n} by {agent} " + "word " * rng.randrange(1, 40)
            out.extend(tag_messages([ChatMessage.assistant(text)], agent))
        elif roll < 0.98:
            out.append(ChatMessage.system(f"note {n}"))
        else:
            note = {"source": rng.choice(agents), "target": agent, "reason": "", "task": ""}
            out.append(ChatMessage.system(f"handed to {agent}", metadata={HANDOFF_KEY: note}))
    return out


class FailingCheckpointStore(InMemoryCheckpointStore):
    """An in-memory checkpoint store whose next save fails once `fail_when` says so, as a
    crash or a lost connection between storing a step and checkpointing it would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_when: Callable[[Checkpoint], bool] | None = None
        self.failures = 0

    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        if self.fail_when is not None and self.fail_when(checkpoint):
            self.fail_when = None
            self.failures += 1
            raise BackendUnavailable("injected failure")
        await super()._put(thread, checkpoint, data, max_checkpoints)


async def redis_prefix_cleanup(url: str, prefix: str) -> None:
    """Delete the keys under `prefix:` that a test created (never anything else)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class OpenAIServer:
    """An OpenAI-compatible server behind `httpx.MockTransport`: answers each request with
    the next scripted message dict and records the request bodies."""

    def __init__(self, replies: Sequence[dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        message = self.replies[len(self.bodies) - 1]
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        )

    def client(self) -> OpenAIChatClient:
        """An `OpenAIChatClient` on the real SDK, talking to this server."""
        sdk = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="https://llm.test/v1",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self)),  # type: ignore[arg-type]
        )
        return OpenAIChatClient("gpt-4o", client=sdk)


def wire_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """An assistant message dict carrying one tool call, as OpenAI sends it."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }
