"""Sequential orchestration: AutoGen-style two-agent chats with carryover, and `Sequential`.

Both store each conversation once, in one `ChatHistoryProvider`, and give every agent its own
view of it: an agent sees its own messages (tool calls included) as assistant messages and
the other agents' text as user messages.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from memweave.errors import InvalidArgument
from memweave.llm import Usage
from memweave.messages import ChatMessage
from memweave.orchestration._runtime import (
    AgentInput,
    as_input_messages,
    as_session,
    call_maybe_async,
    completed_rounds,
    final_text,
    notify_failure,
    notify_invoked,
    store_after_failure,
)
from memweave.orchestration._transcript import AgentView, Transcript
from memweave.orchestration._views import agent_of, tag_messages
from memweave.orchestration.agent import Agent, AgentResponse
from memweave.providers.base import ChatHistoryProvider
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.session import Session

__all__ = [
    "CHAT_OPENING_KEY",
    "DEFAULT_MAX_TURNS",
    "DEFAULT_SUMMARY_PROMPT",
    "TERMINATE",
    "ChatResult",
    "ChatSpec",
    "Sequential",
    "SummaryFunction",
    "SummaryMethod",
    "initiate_chats",
]

TERMINATE = "TERMINATE"
"""A message whose text ends with this word ends a chat."""

DEFAULT_SUMMARY_PROMPT = (
    "Summarize the takeaway from the conversation. Do not add any introductory phrases."
)
"""The prompt `reflection_with_llm` sends when a chat gives none (AutoGen's wording)."""

DEFAULT_MAX_TURNS = 100
"""How many turns a chat with `max_turns=None` runs at most when nobody says `TERMINATE`."""

CHAT_OPENING_KEY = "memweave.chat_opening"
"""Metadata key marking a chat's opening message: `{"carryover": [...]}`, the carryover its
text received. `initiate_chats` finds a chat's stored start by it when the chat is run again."""

SummaryFunction: TypeAlias = Callable[[Agent, Agent, list[ChatMessage]], str | Awaitable[str]]
"""A custom summary: `(sender, recipient, transcript) -> str`, sync or async."""

SummaryMethod: TypeAlias = Literal["last_msg", "reflection_with_llm"] | SummaryFunction
"""How a chat is summarised for the chats after it."""

_CARRYOVER_OPEN = "<carryover>"
_CARRYOVER_CLOSE = "</carryover>"
_CARRYOVER_HEADER = (
    "Context carried over from earlier chats (for reference; the request above is the task):"
)
_TERMINATE_AT_END = re.compile(rf"\s*\b{TERMINATE}\b[\s.!]*$")


class ChatSpec(BaseModel):
    """One chat of `initiate_chats`: who the sender talks to, what it says first, and how the
    chat ends and is summarised."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    recipient: Agent
    """The agent the sender talks to."""
    message: str
    """The sender's first message; the carryover block is appended to it."""
    max_turns: int | None = None
    """Turns to run (one message from each side); None runs until a `TERMINATE`, at most
    `DEFAULT_MAX_TURNS`."""
    summary_method: SummaryMethod = "last_msg"
    """`"last_msg"`, `"reflection_with_llm"` (the sender's model summarises), or a function."""
    summary_prompt: str | None = None
    """The prompt for `reflection_with_llm`; defaults to `DEFAULT_SUMMARY_PROMPT`."""
    carryover: str | Sequence[str] | None = None
    """Extra context for this chat, placed before the earlier chats' summaries."""
    carryover_from: Sequence[int] | None = None
    """Indexes of earlier chats whose summaries to carry over; None means all of them."""
    session_id: str | None = None
    """Where the transcript is stored; a fresh id when None. Running the same chat again on
    its session resumes it (see `initiate_chats`); a new chat there continues the stored
    transcript."""

    def __init__(self, recipient: Agent, message: str, **data: Any) -> None:
        try:
            super().__init__(recipient=recipient, message=message, **data)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in error["loc"]) or "ChatSpec"
            raise InvalidArgument(where, error.get("input"), error["msg"]) from None


class ChatResult(BaseModel):
    """The outcome of one chat of `initiate_chats`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: str
    """The session the transcript is stored under."""
    chat_history: tuple[ChatMessage, ...]
    """The whole transcript as stored, oldest first."""
    summary: str
    """The chat's summary, as later chats receive it."""
    carryover: tuple[str, ...]
    """The carryover this chat's first message actually received, in order."""
    usage: Usage = Usage()
    """Tokens used by every model call of the chat (summary included)."""


def _check_turns(max_turns: int | None, where: str) -> None:
    if max_turns is not None and (
        isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1
    ):
        raise InvalidArgument(f"{where}.max_turns", max_turns, "must be a positive int or None")


def _validate_chats(sender: Agent, chats: Sequence[ChatSpec]) -> None:
    if not isinstance(sender, Agent):
        raise InvalidArgument("sender", sender, "expected an Agent")
    if isinstance(chats, ChatSpec) or not isinstance(chats, Sequence):
        raise InvalidArgument("chats", chats, "expected a sequence of ChatSpec")
    for index, spec in enumerate(chats):
        where = f"chats[{index}]"
        if not isinstance(spec, ChatSpec):
            raise InvalidArgument(where, spec, "expected a ChatSpec")
        if spec.recipient.name == sender.name:
            raise InvalidArgument(
                f"{where}.recipient", spec.recipient.name, "the sender cannot chat with itself"
            )
        _check_turns(spec.max_turns, where)
        method = spec.summary_method
        if not callable(method) and method not in ("last_msg", "reflection_with_llm"):
            raise InvalidArgument(
                f"{where}.summary_method",
                method,
                "use 'last_msg', 'reflection_with_llm' or a function",
            )
        for earlier in spec.carryover_from or ():
            if (
                isinstance(earlier, bool)
                or not isinstance(earlier, int)
                or not (0 <= earlier < index)
            ):
                raise InvalidArgument(
                    f"{where}.carryover_from",
                    earlier,
                    f"must name an earlier chat, an index in 0..{index - 1}",
                )


def carryover_block(message: str, carryover: Sequence[str]) -> str:
    """Append `carryover` to `message` as a clearly marked context block."""
    if not carryover:
        return message
    items = "\n\n".join(item.strip() for item in carryover)
    return f"{message}\n\n{_CARRYOVER_HEADER}\n{_CARRYOVER_OPEN}\n{items}\n{_CARRYOVER_CLOSE}"


def is_termination(message: ChatMessage) -> bool:
    """Whether the message's text ends with `TERMINATE`."""
    return message.role == "assistant" and message.text.rstrip().endswith(TERMINATE)


def strip_terminate(text: str) -> str:
    """Remove a trailing `TERMINATE` keyword (and what punctuation follows it)."""
    return _TERMINATE_AT_END.sub("", text).strip()


async def _summarize(
    spec: ChatSpec, sender: Agent, session: Session, transcript: Transcript
) -> tuple[str, Usage]:
    method = spec.summary_method
    if method == "last_msg":
        await transcript.ensure(lambda held: any(_has_text(m) for m in held))
        for message in reversed(transcript.messages):
            if _has_text(message):
                return strip_terminate(message.text), Usage()
        return "", Usage()
    if method == "reflection_with_llm":
        window = await transcript.window(sender.reducer, AgentView(sender.name, "user"))
        prompt = ChatMessage.user(spec.summary_prompt or DEFAULT_SUMMARY_PROMPT)
        prepared = await sender._prepare(session, window, [prompt], reduced=True)
        response = await sender._call_model(prepared, allow_tools=False)
        return strip_terminate(response.message.text), response.usage
    whole = await transcript.whole()
    summary = await call_maybe_async(method, sender, spec.recipient, whole)
    if not isinstance(summary, str):
        raise InvalidArgument("summary_method", summary, "a summary function must return a str")
    return summary, Usage()


def _has_text(message: ChatMessage) -> bool:
    return message.role == "assistant" and bool(message.text.strip())


async def _agent_turn(
    agent: Agent,
    session: Session,
    history: ChatHistoryProvider,
    transcript: Transcript,
) -> tuple[list[ChatMessage], Usage]:
    """Let `agent` answer its view of the transcript, then store its messages as one batch.

    When the turn fails, its completed tool rounds are stored, so the chat can go on from them.
    """
    window = await transcript.window(agent.reducer, AgentView(agent.name, "user"))
    produced: list[ChatMessage] = []
    try:
        result = await agent._respond(session, window, progress=produced, reduced=True)
    except (Exception, asyncio.CancelledError) as exc:
        await store_after_failure(history, session.id, completed_rounds(produced), exc)
        await notify_failure(agent.context_providers, session, window, exc)
        raise
    await history.add_messages(session.id, result.messages)
    await notify_invoked(agent.context_providers, session, result.request, result.messages, None)
    return result.messages, result.usage


def _is_answer(message: ChatMessage) -> bool:
    """Whether `message` ends a speaker's turn: an assistant message without tool calls."""
    return message.role == "assistant" and not message.tool_calls


def _stored_start(transcript: Sequence[ChatMessage], sender: Agent, spec: ChatSpec) -> int | None:
    """The index of this chat's stored opening, when the session's last chat is this one.

    The last chat is the one whose opening (a message marked with `CHAT_OPENING_KEY`) comes
    last; it is this chat when the sender wrote it with this chat's message and no one but
    the two agents wrote after it.
    """
    for index in range(len(transcript) - 1, -1, -1):
        opening = transcript[index]
        if CHAT_OPENING_KEY not in opening.metadata:
            continue
        if agent_of(opening) != sender.name or not (
            opening.text == spec.message
            or opening.text.startswith(f"{spec.message}\n\n{_CARRYOVER_HEADER}\n")
        ):
            return None
        speakers = {sender.name, spec.recipient.name}
        if any(agent_of(m) not in speakers for m in transcript[index + 1 :]):
            return None
        return index
    return None


def _next_speaker(
    chat: Sequence[ChatMessage], sender: Agent, recipient: Agent, turns: int
) -> Agent | None:
    """Who speaks next in a chat (its messages from the opening on), or None when it is over.

    A chat is over after a message ending with `TERMINATE` or the recipient's `turns`-th
    answer. A turn cut short (the transcript ends in tool calls or results) is its speaker's
    to finish; otherwise the side that did not speak last answers.
    """
    last = chat[-1]
    if is_termination(last) and not last.tool_calls:
        return None
    answers = sum(1 for m in chat[1:] if _is_answer(m) and agent_of(m) == recipient.name)
    if answers >= turns:
        return None
    spoke_last = sender if agent_of(last) == sender.name else recipient
    if not _is_answer(last):
        return spoke_last
    return recipient if spoke_last is sender else sender


async def _run_chat(
    sender: Agent,
    spec: ChatSpec,
    history: ChatHistoryProvider,
    carryover: Sequence[str],
) -> ChatResult:
    session = Session(id=spec.session_id or uuid.uuid4().hex)
    # Turns read only their agents' windows. Where a resumed chat starts is settled by the
    # newest chat opening, or by a message from neither agent (no chat goes on past one);
    # the result's `chat_history` reads the rest.
    transcript = Transcript(history, session.id)
    speakers = {sender.name, spec.recipient.name}
    await transcript.ensure(
        lambda held: any(
            CHAT_OPENING_KEY in m.metadata or agent_of(m) not in speakers for m in held
        )
    )
    held = transcript.messages
    start = _stored_start(held, sender, spec)
    if start is None:
        text = carryover_block(spec.message, carryover)
        marker = {CHAT_OPENING_KEY: {"carryover": list(carryover)}}
        opening = tag_messages([ChatMessage.assistant(text, metadata=marker)], sender.name)
        await history.add_messages(session.id, opening)
        transcript.extend(opening)
        chat = list(opening)
        used = tuple(carryover)
    else:
        chat = held[start:]
        stored = chat[0].metadata[CHAT_OPENING_KEY]
        items = stored.get("carryover") if isinstance(stored, dict) else None
        used = tuple(str(item) for item in items) if isinstance(items, list) else ()
    usage = Usage()
    turns = spec.max_turns if spec.max_turns is not None else DEFAULT_MAX_TURNS
    while (speaker := _next_speaker(chat, sender, spec.recipient, turns)) is not None:
        produced, used_now = await _agent_turn(speaker, session, history, transcript)
        transcript.extend(produced)
        chat.extend(produced)
        usage = usage + used_now
    summary, used_now = await _summarize(spec, sender, session, transcript)
    return ChatResult(
        session_id=session.id,
        chat_history=tuple(await transcript.whole()),
        summary=summary,
        carryover=used,
        usage=usage + used_now,
    )


async def initiate_chats(
    sender: Agent,
    chats: Sequence[ChatSpec],
    *,
    history: ChatHistoryProvider | None = None,
) -> list[ChatResult]:
    """Run two-agent chats one after another, each starting with the earlier ones' summaries.

    In each chat the sender opens with `ChatSpec.message`, then the two agents alternate; a
    turn is one message from each side (the first turn: the opening and the recipient's reply).
    A chat ends after `max_turns` turns or on a message ending with `TERMINATE`. Each agent
    sees its own messages as assistant messages and the other's as user messages.

    Carryover: a chat's first message gets its explicit `carryover`, then the summaries of
    the earlier chats (all, or those named in `carryover_from`), in a block marked as
    context. The carryover used is recorded on each `ChatResult`.

    Every transcript is stored under its own session id (`ChatSpec.session_id` or a fresh
    one) in `history`, turn by turn as the chat goes (a failed turn keeps its completed tool
    rounds), so a failed run can be inspected and resumed. A turn reads only its agent's
    window of the session when the agent has a reducer; since `ChatResult.chat_history` is
    the whole transcript, the rest of the session is read once, when the chat ends.

    Resuming: run the same chats again with the same `session_id`s. A chat whose session
    already ends with this chat (its opening, marked with `CHAT_OPENING_KEY`, is the last
    one stored and carries this chat's message) is not started again: a finished one (it
    ended with `TERMINATE` or reached `max_turns`) is not run at all, and its `ChatResult` is
    rebuilt from the stored transcript (the summary made again by its `summary_method`, the
    carryover read from the stored opening, `usage` counting only this call's model calls);
    an unfinished one goes on from where it stopped, without adding its opening again. A
    chat with another message on a used session starts a new chat there, after the old one
    (so of several chats sharing one session id, only the last is resumed).

    Args:
        sender: The agent that opens every chat.
        chats: The chats, in order.
        history: Where transcripts are stored; a new in-memory provider when None.

    Returns:
        One `ChatResult` per chat.

    Raises:
        InvalidArgument: A bad chat spec (checked before any chat runs): a `carryover_from`
            index that is not an earlier chat, a bad `max_turns` or `summary_method`.

    Example:
        ```python
        results = await initiate_chats(
            user_proxy,
            [
                ChatSpec(recipient=numbers, message="Process 14, 3, 8.", max_turns=2),
                ChatSpec(recipient=analyst, message="Analyze the result.", max_turns=1),
            ],
        )
        print(results[1].carryover, results[1].summary)
        ```
    """
    _validate_chats(sender, chats)
    if history is not None and not isinstance(history, ChatHistoryProvider):
        raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
    store = history if history is not None else InMemoryChatHistoryProvider()
    results: list[ChatResult] = []
    for index, spec in enumerate(chats):
        explicit = (
            [spec.carryover] if isinstance(spec.carryover, str) else list(spec.carryover or [])
        )
        chosen = range(index) if spec.carryover_from is None else spec.carryover_from
        summaries = [results[i].summary for i in chosen if results[i].summary]
        results.append(await _run_chat(sender, spec, store, [*explicit, *summaries]))
    return results


class Sequential:
    """A pipeline of agents: each answers the conversation so far, and the next one follows.

    The user's input and every agent's reply are stored once, in one conversation, and
    repeated runs on the same session continue it. The first agent sees the whole
    conversation; each later agent sees it too (other agents' text as user messages), or,
    with `chain_only_agent_responses`, only the previous agent's reply. An agent with a
    reducer sees (and the run reads) only the window its reducer keeps of that view.

    Args:
        agents: The agents, in order (at least one, unique names).
        chain_only_agent_responses: Give each agent after the first only the previous reply.
        history: Where the conversation is stored; a new in-memory provider when None.

    Raises:
        InvalidArgument: No agents, a non-agent, or two agents with one name.

    Example:
        ```python
        pipeline = Sequential([writer, reviewer])
        result = await pipeline.run("Write a haiku about tea.", session="s1")
        print(result.text)  # the reviewer's answer
        ```
    """

    def __init__(
        self,
        agents: Sequence[Agent],
        *,
        chain_only_agent_responses: bool = False,
        history: ChatHistoryProvider | None = None,
    ) -> None:
        if isinstance(agents, Agent) or not isinstance(agents, Sequence) or not agents:
            raise InvalidArgument("agents", agents, "expected a non-empty sequence of agents")
        names: set[str] = set()
        for agent in agents:
            if not isinstance(agent, Agent):
                raise InvalidArgument("agents", agent, "expected an Agent")
            if agent.name in names:
                raise InvalidArgument("agents", agent.name, "two agents share this name")
            names.add(agent.name)
        if history is not None and not isinstance(history, ChatHistoryProvider):
            raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
        self._agents = tuple(agents)
        self._chain_only = bool(chain_only_agent_responses)
        self._history = history if history is not None else InMemoryChatHistoryProvider()

    @property
    def agents(self) -> tuple[Agent, ...]:
        """The agents, in order."""
        return self._agents

    @property
    def history(self) -> ChatHistoryProvider:
        """Where conversations are stored."""
        return self._history

    async def run(
        self, message: AgentInput, *, session: Session | str | None = None
    ) -> AgentResponse:
        """Pass `message` through every agent in order and return all of their messages.

        The input is stored with the first agent's reply, and each later reply as its own
        batch; when an agent fails, what was produced before it stays stored (the input at
        least), the failing agent's completed tool rounds are stored with it in one batch,
        and the error reaches the caller unchanged.

        Returns:
            Every agent's new messages; `text` is the last agent's answer.
        """
        inputs = as_input_messages(message)
        current = as_session(session)
        transcript = Transcript(self._history, current.id)
        first = self._agents[0]
        window = await transcript.window(first.reducer, AgentView(first.name, "user"), extra=inputs)
        produced: list[ChatMessage] = []
        usage = Usage()
        pending: list[ChatMessage] = list(inputs)
        previous: list[ChatMessage] = []
        progress: list[ChatMessage] = []
        try:
            for position, agent in enumerate(self._agents):
                reduced = True
                if position == 0:
                    view = window
                elif self._chain_only:
                    view = [
                        ChatMessage.user(final_text(previous), name=self._agents[position - 1].name)
                    ]
                    reduced = False
                else:
                    view = await transcript.window(
                        agent.reducer, AgentView(agent.name, "user"), extra=pending
                    )
                progress = []
                try:
                    result = await agent._respond(current, view, progress=progress, reduced=reduced)
                except (Exception, asyncio.CancelledError) as exc:
                    kept = [*pending, *completed_rounds(progress)]
                    pending, progress = [], []
                    await store_after_failure(self._history, current.id, kept, exc)
                    await notify_failure(agent.context_providers, current, view, exc)
                    raise
                await self._history.add_messages(current.id, [*pending, *result.messages])
                transcript.extend([*pending, *result.messages])
                pending, progress = [], []
                await notify_invoked(
                    agent.context_providers, current, result.request, result.messages, None
                )
                produced.extend(result.messages)
                previous = result.messages
                usage = usage + result.usage
        except (Exception, asyncio.CancelledError) as exc:
            kept = [*pending, *completed_rounds(progress)]
            await store_after_failure(self._history, current.id, kept, exc)
            raise
        return AgentResponse(
            messages=tuple(produced),
            text=final_text(previous),
            usage=usage,
            session_id=current.id,
        )
