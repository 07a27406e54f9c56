"""Sequential orchestration: AutoGen-style two-agent chats with carryover, and `Sequential`.

Both store each conversation once, in one `ChatHistoryProvider`, and give every agent its own
view of it: an agent sees its own messages (tool calls included) as assistant messages and
the other agents' text as user messages.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from memweave.errors import InvalidArgument
from memweave.llm import Usage
from memweave.messages import ChatMessage
from memweave.orchestration._events import TerminateRun, UserInputRequest
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
from memweave.orchestration._team import Team
from memweave.orchestration._transcript import AgentView, Transcript
from memweave.orchestration._views import agent_of
from memweave.orchestration.agent import Agent, AgentResponse
from memweave.orchestration.checkpoints import CheckpointStore
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
    "HumanInputMode",
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

HumanInputMode: TypeAlias = Literal["NEVER", "TERMINATE", "ALWAYS"]
"""When a chat asks the human who speaks for its sender (AutoGen's `human_input_mode`): never,
when the chat would end (a `TERMINATE` or `max_turns` reached), or before every sender turn."""

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
    sender: Agent | None = None
    """The agent that opens this chat; None means the sender given to `initiate_chats`."""
    human_input_mode: HumanInputMode | None = None
    """When the human speaking for the sender is asked (see `initiate_chats`); None means
    the mode given to `initiate_chats`."""

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
    """Tokens used by every model call of the chat (summary included), and their cost when
    the clients know their prices."""
    request: UserInputRequest | None = None
    """The question the chat waits on when it paused for human input (then `summary` is
    empty and no later chat has run); None for a finished chat."""

    @property
    def cost(self) -> float | None:
        """What the chat's model calls cost (`usage.cost`); None when no client knows prices."""
        return self.usage.cost


def _check_turns(max_turns: int | None, where: str) -> None:
    if max_turns is not None and (
        isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1
    ):
        raise InvalidArgument(f"{where}.max_turns", max_turns, "must be a positive int or None")


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


async def initiate_chats(
    sender: Agent | None,
    chats: Sequence[ChatSpec | Mapping[str, Any]],
    *,
    history: ChatHistoryProvider | None = None,
    human_input_mode: HumanInputMode = "NEVER",
    checkpoints: CheckpointStore | None = None,
    responses: Mapping[str, str | TerminateRun] | None = None,
) -> list[ChatResult]:
    """Run two-agent chats one after another, each starting with the earlier ones' summaries.

    In each chat the sender opens with `ChatSpec.message`, then the two agents alternate; a
    turn is one message from each side (the first turn: the opening and the recipient's reply).
    A chat ends after `max_turns` turns or on a message ending with `TERMINATE`. Each agent
    sees its own messages as assistant messages and the other's as user messages. A chat is
    a `ChatSpec` or an AutoGen-style dict with the same keys (`{"recipient": ..., "message":
    ..., "max_turns": ..., "summary_method": ..., "carryover": ..., "sender": ...}`, plus
    AutoGen's `summary_args`, `finished_chat_indexes_to_exclude_from_carryover` and `silent`);
    each chat may name its own `sender`.

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

    Human input (AutoGen's `human_input_mode`, per chat or for all): a human speaks for the
    sender. `"NEVER"` never asks. `"TERMINATE"` asks when the chat would end: after the
    recipient's `TERMINATE`, or when `max_turns` is reached. `"ALWAYS"` asks there and
    before every other sender turn too. Asking pauses the run: the chat's `ChatResult` has
    the `request` (a `UserInputRequest`), no later chat runs, and the call returns. Answer
    by calling again with the same chats and `responses={request.request_id: answer}`:
    text is sent as the sender's message (stored as its message, marked with
    `memweave.human_input`) and the recipient answers, even past `max_turns`; an empty
    answer lets the sender's model reply, or, where the chat would end anyway, ends it;
    `"exit"` or `request.terminate()` ends the chat. Request ids derive from the session and
    the message answered, so a run resumes in another process; the human's decisions that
    store no message are kept in `checkpoints` (required then, as is a `session_id` on every
    chat). Answers to questions already answered are ignored, so a call can be retried.

    Cost: `ChatResult.usage.cost` (and `ChatResult.cost`) add up what the model calls cost
    when the clients know their prices (see `memweave.llm.TokenPrices`).

    Args:
        sender: The agent that opens every chat without a `sender` of its own; None when
            every chat names one.
        chats: The chats, in order: `ChatSpec`s or dicts.
        history: Where transcripts are stored; a new in-memory provider when None.
        human_input_mode: The mode of every chat without one of its own.
        checkpoints: Where the human's decisions are kept; needed with human input.
        responses: Answers to the questions of an earlier call, by request id.

    Returns:
        One `ChatResult` per chat run: all of them, or up to the one that waits for the human
        (its `request` is set).

    Raises:
        InvalidArgument: A bad chat spec (checked before any chat runs): an unknown dict key
            (named), a `carryover_from` index that is not an earlier chat, a bad `max_turns`,
            `summary_method` or `human_input_mode`, no sender; human input without
            `checkpoints` or without a `session_id` on every chat; a response to no question
            these chats asked.

    Example:
        ```python
        results = await initiate_chats(
            user_proxy,
            [
                ChatSpec(recipient=numbers, message="Process 14, 3, 8.", max_turns=2),
                {"recipient": analyst, "message": "Analyze the result.", "max_turns": 1},
            ],
        )
        print(results[1].carryover, results[1].summary)
        ```
    """
    from memweave.orchestration._chat_run import run_chats
    from memweave.orchestration._chat_specs import plan_chats

    plan = plan_chats(
        sender,
        chats,
        human_input_mode=human_input_mode,
        checkpoints=checkpoints,
        responses=responses,
    )
    if history is not None and not isinstance(history, ChatHistoryProvider):
        raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
    store = history if history is not None else InMemoryChatHistoryProvider()
    return await run_chats(plan, store, checkpoints)


class Sequential:
    """A pipeline of agents: each answers the conversation so far, and the next one follows.

    A step may be a nested workflow wrapped in a `Team` (and a `Sequential` may itself be a
    `Team` of another workflow): the team is given the newest message it is shown as its
    task, works in a sub-session of its own, and its answer is stored here as one message.

    The user's input and every agent's reply are stored once, in one conversation, and
    repeated runs on the same session continue it. The first agent sees the whole
    conversation; each later agent sees it too (other agents' text as user messages), or,
    with `chain_only_agent_responses`, only the previous agent's reply. An agent with a
    reducer sees (and the run reads) only the window its reducer keeps of that view.

    Args:
        agents: The agents (or teams), in order (at least one, unique names).
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
        agents: Sequence[Agent | Team],
        *,
        chain_only_agent_responses: bool = False,
        history: ChatHistoryProvider | None = None,
    ) -> None:
        if isinstance(agents, Agent | Team) or not isinstance(agents, Sequence) or not agents:
            raise InvalidArgument("agents", agents, "expected a non-empty sequence of agents")
        names: set[str] = set()
        for agent in agents:
            if not isinstance(agent, Agent | Team):
                raise InvalidArgument("agents", agent, "expected an Agent or a Team")
            if agent.name in names:
                raise InvalidArgument("agents", agent.name, "two agents share this name")
            names.add(agent.name)
        if history is not None and not isinstance(history, ChatHistoryProvider):
            raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
        self._agents = tuple(agents)
        self._chain_only = bool(chain_only_agent_responses)
        self._history = history if history is not None else InMemoryChatHistoryProvider()

    @property
    def agents(self) -> tuple[Agent | Team, ...]:
        """The agents (and teams), in order."""
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
