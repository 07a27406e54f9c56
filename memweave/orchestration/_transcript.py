"""Reading a stored conversation at the cost of a window: `read_window` for one turn, and
`Transcript` for an orchestrator that holds one conversation through a run.

Both read through `ChatHistoryProvider.list_messages(session_id, reducer=...)`, which reads
the session from its end only as far back as the reducer needs (plus its system messages).
A provider with a read reducer of its own (`reduce_on="read"`) is read whole instead: its
view is what an orchestrator has always reduced further, and `reducer=` would replace it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from memweave.errors import InvalidArgument, SessionChanged
from memweave.messages import ChatMessage
from memweave.orchestration._views import agent_view, own_calls
from memweave.providers.base import ChatHistoryProvider
from memweave.reducers.base import ChatReducer

__all__ = ["AgentView", "Transcript", "read_window"]

_T = TypeVar("_T")

# Answers whether the held part of a conversation settles a question: called with the
# stored system messages older than the held part, the held part, and whether that is the
# whole conversation; returns the answer, or None to have older messages read first.
_Settles = Callable[[list[ChatMessage], list[ChatMessage], bool], Awaitable[_T | None]]

_FIRST_OLDER_PAGE = 64


def _has_read_reducer(history: ChatHistoryProvider) -> bool:
    return history.reducer is not None and history.reduce_on == "read"


async def read_window(
    history: ChatHistoryProvider, session_id: str, reducer: ChatReducer | None
) -> list[ChatMessage]:
    """Return the session's messages as `reducer` keeps them (all of them without one).

    The same as `reducer.reduce(await history.list_messages(session_id))`, at the cost of
    the window rather than of the session.
    """
    if reducer is None:
        return await history.list_messages(session_id)
    if _has_read_reducer(history):
        return await reducer.reduce(await history.list_messages(session_id))
    return await history.list_messages(session_id, reducer=reducer)


@dataclass(frozen=True, slots=True)
class AgentView:
    """What one agent sees of a shared conversation (see `agent_view`)."""

    agent: str
    """The agent's name."""
    others_as: Literal["assistant", "user"]
    """How the other agents' text is shown."""

    def of(self, conversation: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The view of a whole conversation."""
        return agent_view(conversation, self.agent, others_as=self.others_as)

    def split(
        self, older_system: Sequence[ChatMessage], newest: Sequence[ChatMessage]
    ) -> tuple[list[ChatMessage], list[ChatMessage]]:
        """The view of a conversation known by its newest part and its older system messages:
        the view's system messages older than the returned tail, and a tail of the view.

        Whether a tool result is shown depends on who made its call; a result whose call is
        not in `newest` is undecided, so the returned tail starts after the newest such one
        (the system messages before it join the older ones). Tool call ids are taken to name
        one call each, as model APIs make them.
        """
        called = {call.id for m in newest if m.role == "assistant" for call in m.tool_calls}
        cut = 0
        for index in range(len(newest) - 1, -1, -1):
            message = newest[index]
            call_id = message.tool_call_id
            if message.role == "tool" and call_id is not None and call_id not in called:
                cut = index + 1
                break
        own = own_calls(newest, self.agent)
        head_system = [m for m in newest[:cut] if m.role == "system"]
        older = agent_view([*older_system, *head_system], self.agent, others_as=self.others_as)
        tail = agent_view(newest[cut:], self.agent, others_as=self.others_as, own=own)
        return older, tail


class _Probe(ChatReducer, Generic[_T]):
    """Passed as `reducer=` to read a session from its end until `settles` has its answer;
    keeps what was read and the answer. The window it returns is not used."""

    def __init__(self, settles: _Settles[_T]) -> None:
        self.settles = settles
        self.system: list[ChatMessage] = []
        self.newest: list[ChatMessage] = []
        self.complete = False
        self.answer: _T | None = None

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        # The provider passes the whole session here when it is shorter than a page.
        self.newest, self.complete = list(messages), True
        self.answer = await self.settles([], self.newest, True)
        return []

    async def reduce_tail(
        self, system: Sequence[ChatMessage], tail: Sequence[ChatMessage]
    ) -> list[ChatMessage] | None:
        answer = await self.settles(list(system), list(tail), False)
        if answer is None:
            return None
        self.system, self.newest, self.answer = list(system), list(tail), answer
        return []


class Transcript:
    """One stored conversation as an orchestrator holds it through a run.

    It holds the newest stored messages read so far and the messages the orchestrator added
    since (`extend`), and reads older ones only when a question needs them: an agent's
    window (`window`), how far back something lies (`ensure`), or everything (`whole`).
    The first question reads through `list_messages(reducer=...)`; older messages are read
    with `list_messages(limit=..., before=...)`, so what is held is always the stored
    conversation as it was when first read, plus what the run added.

    Args:
        history: Where the conversation is stored.
        session_id: Its session id.
    """

    def __init__(self, history: ChatHistoryProvider, session_id: str) -> None:
        self.history = history
        self.session_id = session_id
        self._loaded = False
        self._complete = False
        self._system: list[ChatMessage] = []
        self._messages: list[ChatMessage] = []
        self._added: set[str] = set()

    @property
    def messages(self) -> list[ChatMessage]:
        """The held part, oldest first: the whole conversation when `complete`, else its
        newest messages (a copy)."""
        return list(self._messages)

    @property
    def newest(self) -> ChatMessage | None:
        """The newest held message (None when the conversation is empty)."""
        return self._messages[-1] if self._messages else None

    @property
    def complete(self) -> bool:
        """Whether the whole conversation is held."""
        return self._complete

    def extend(self, messages: Sequence[ChatMessage]) -> None:
        """Add messages the run stored (or means to), after the held ones.

        Raises:
            RuntimeError: Nothing was read yet (the first read would hold them twice).
        """
        if not self._loaded:
            raise RuntimeError("Transcript.extend() before the conversation was first read")
        self._messages.extend(messages)
        self._added.update(message.id for message in messages)

    async def whole(self) -> list[ChatMessage]:
        """Return the whole conversation, reading what is not held yet."""
        if not self._loaded:
            await self._read_whole()
        elif not self._complete:
            await self._read_older(None)
        return list(self._messages)

    async def ensure(self, found: Callable[[list[ChatMessage]], bool]) -> None:
        """Hold enough of the conversation for `found(held part)` to be True, or all of it."""

        async def settles(
            _: list[ChatMessage], held: list[ChatMessage], complete: bool
        ) -> bool | None:
            return True if complete or found(held) else None

        await self._settle(settles)

    async def window(
        self,
        reducer: ChatReducer | None,
        view: AgentView | None = None,
        *,
        extra: Sequence[ChatMessage] = (),
        drop: int = 0,
    ) -> list[ChatMessage]:
        """Return what `reducer` keeps of (`view` of) the conversation, reading only as far
        back as it needs; the whole (view of the) conversation when `reducer` is None.

        The same as `reducer.reduce(view.of(conversation))` when that view is not empty (an
        empty one is returned as it is), where the conversation is the held one without its
        newest `drop` messages, followed by `extra` (messages not stored yet).
        """
        if reducer is None:
            await self.whole()

        def conversation(held: list[ChatMessage]) -> list[ChatMessage]:
            return [*held[: max(0, len(held) - drop)], *extra]

        async def settles(
            system: list[ChatMessage], held: list[ChatMessage], complete: bool
        ) -> list[ChatMessage] | None:
            messages = conversation(held)
            if complete:
                seen = view.of(messages) if view is not None else messages
                return await reducer.reduce(seen) if reducer is not None and seen else seen
            if reducer is None:
                return None
            older, tail = view.split(system, messages) if view is not None else (system, messages)
            return await reducer.reduce_tail(older, tail)

        return await self._settle(settles)

    async def _settle(self, settles: _Settles[_T]) -> _T:
        if not self._loaded:
            if _has_read_reducer(self.history):
                await self._read_whole()
            else:
                probe: _Probe[_T] = _Probe(settles)
                await self.history.list_messages(self.session_id, reducer=probe)
                self._loaded = True
                self._system, self._messages = probe.system, probe.newest
                self._complete = probe.complete
                if probe.answer is not None:
                    return probe.answer
        while True:
            answer = await settles(list(self._system), self._messages, self._complete)
            if answer is not None:
                return answer
            if self._complete:
                raise RuntimeError(
                    "a Transcript question went unanswered on the whole conversation"
                )
            await self._read_older(max(_FIRST_OLDER_PAGE, len(self._messages)))

    async def _read_whole(self) -> None:
        stored = await self.history.list_messages(self.session_id)
        if self._loaded:
            # Keep what the run added but has not stored (a plan applied in memory only).
            known = {message.id for message in stored}
            stored.extend(m for m in self._messages if m.id in self._added and m.id not in known)
        self._loaded, self._complete = True, True
        self._system, self._messages = [], stored

    async def _read_older(self, limit: int | None) -> None:
        """Read up to `limit` (None: all) stored messages older than the held ones."""
        if not self._messages:
            await self._read_whole()
            return
        try:
            older = await self.history.list_messages(
                self.session_id, limit=limit, before=self._messages[0].id
            )
        except (InvalidArgument, SessionChanged):
            # The oldest held message was deleted meanwhile; start again from what is stored.
            await self._read_whole()
            return
        self._messages[:0] = older
        if limit is None or len(older) < limit:
            self._complete, self._system = True, []
        else:
            read = {message.id for message in older}
            self._system = [message for message in self._system if message.id not in read]
