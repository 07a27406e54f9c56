"""The step machine behind `HandoffWorkflow.run`: one model call per step, a checkpoint after each.

Every transition (a user input, a step, the answers to tool approvals, the end of a run) is
planned in full first (`_handoff_plan.Planner`): the messages it stores, the checkpoint it
leads to and the events it yields. The messages are then stored as one batch, the checkpoint
is saved with the id of the newest stored message, and only then are providers told and
events yielded. Hence:

- a failed model call stores nothing, and the last checkpoint (status `running`) re-runs it;
- a consumer that stops reading, a cancelled task or a failing `invoked` hook leave the
  transition stored and checkpointed;
- when the messages were stored but the checkpoint was not (a crash, a failed save), the
  next load finds messages after the checkpoint's `last_message_id` and completes that
  transition from them, planning it again without calling the model or running a tool.

Invariant kept at every checkpoint: the stored conversation has a result for every tool
call except those the checkpoint lists as pending approval.

The conversation is held as a `Transcript`: a step reads its agent's window, and older
messages are read only where a rule looks further back (to the checkpoint's newest message,
the last user message, the last handoff to an agent) or needs all of it (a termination
condition, a `WorkflowOutput`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memweave.errors import InvalidArgument, ModelError
from memweave.llm import ChatResponse
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._events import (
    Response,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.orchestration._handoff_answers import answer_requests
from memweave.orchestration._handoff_plan import (
    AUTONOMOUS_KEY,
    END_ANSWER_KEY,
    NOT_RUN,
    Plan,
    Planner,
    handed_over_or_wrote,
)
from memweave.orchestration._runtime import (
    AgentInput,
    as_input_messages,
    notify_failure,
    notify_invoked,
)
from memweave.orchestration._step_calls import step_calls
from memweave.orchestration._streaming import TextDelta, ToolCallDelta
from memweave.orchestration._team import Team
from memweave.orchestration._transcript import AgentView, Transcript
from memweave.orchestration._views import HANDOFF_KEY, agent_of, tag_messages
from memweave.orchestration.checkpoints import Checkpoint
from memweave.orchestration.tools import TOOL_ERROR_KEY, Tool
from memweave.session import Session

if TYPE_CHECKING:
    from memweave.orchestration.agent import Agent
    from memweave.orchestration.handoff import HandoffWorkflow

__all__ = ["Run"]

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _twin_key(message: ChatMessage) -> tuple[str, str]:
    """What makes a planned message the one already stored by the same transition (a message
    planned again gets a new id)."""
    if message.role == "tool" and message.tool_call_id:
        return ("tool", message.tool_call_id)
    if message.role == "system" and HANDOFF_KEY in message.metadata:
        return ("handoff_note", "")
    if message.role == "user" and message.metadata.get(AUTONOMOUS_KEY):
        return ("autonomous_prompt", "")
    if message.role == "assistant" and message.metadata.get(END_ANSWER_KEY):
        return ("end_answer", "")
    return ("id", message.id)


def _is_real_user(message: ChatMessage) -> bool:
    return message.role == "user" and not message.metadata.get(AUTONOMOUS_KEY)


def _since_user(conversation: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The messages after the last real (not autonomous) user message."""
    for index in range(len(conversation) - 1, -1, -1):
        if _is_real_user(conversation[index]):
            return tuple(conversation[index + 1 :])
    return tuple(conversation)


def _same_input(stored: Sequence[ChatMessage], given: Sequence[ChatMessage]) -> bool:
    def shape(messages: Sequence[ChatMessage]) -> list[tuple[Any, ...]]:
        return [(m.role, m.content, m.name) for m in messages]

    return bool(stored) and shape(stored) == shape(given)


class Run:
    """One call of `HandoffWorkflow.run`: loads the thread, applies the input, drives steps."""

    def __init__(
        self, workflow: HandoffWorkflow, session: Session | str | None, *, stream: bool = False
    ) -> None:
        self.wf = workflow
        self.stream = bool(stream)
        if session is None:
            self.session_id = workflow.session_id
        elif isinstance(session, Session):
            self.session_id = session.id
        elif isinstance(session, str):
            self.session_id = Session(id=session).id
        else:
            raise InvalidArgument("session", session, "expected a Session, a session id or None")
        self._given_session = session if isinstance(session, Session) else None
        self.session = self._given_session or Session(id=self.session_id)
        self.cp = Checkpoint(
            workflow=workflow.name,
            session_id=self.session_id,
            status="idle",
            current_agent=workflow.start_agent,
            state=workflow._state.initial() if workflow._state is not None else None,
        )
        self.saved = False
        self.conversation = Transcript(workflow.history, self.session_id)
        self._ahead: list[ChatMessage] = []
        self._answered: set[str] = set()
        self._replayed: list[ChatMessage] = []

    # -- loading and saving ---------------------------------------------------------------------

    async def _load_checkpoint(self, checkpoint_id: str | None) -> bool:
        """Load the checkpoint to go on from; return whether it is the thread's latest."""
        store = self.wf.checkpoints
        latest = await store.get_checkpoint(self.wf.name, self.session_id)
        found = latest
        if checkpoint_id is not None and (latest is None or latest.id != checkpoint_id):
            found = await store.get_checkpoint(self.wf.name, self.session_id, checkpoint_id)
        if found is None:
            if checkpoint_id is not None:
                raise InvalidArgument(
                    "checkpoint_id",
                    checkpoint_id,
                    f"no such checkpoint for workflow {self.wf.name!r} and session "
                    f"{self.session_id!r}",
                )
            return True
        if found.current_agent not in self.wf.agents:
            raise InvalidArgument(
                "checkpoint_id",
                found.id,
                f"the checkpoint's agent {found.current_agent!r} is not a participant of "
                f"workflow {self.wf.name!r}",
            )
        if self.wf._state is not None and found.state is None:
            found = found.model_copy(update={"state": self.wf._state.initial()})
        self.cp = found
        self.saved = True
        if self._given_session is None and found.session:
            self.session = Session.from_dict(dict(found.session))
        return found is latest

    async def _stored_after_checkpoint(self) -> list[ChatMessage] | None:
        """The messages stored after the checkpoint, or None when its place is unknown.

        Without a checkpoint, every stored message is after it; they matter only when they
        are all user messages (an input stored before its first checkpoint), so otherwise
        none are returned and the conversation is read only to the newest other message.
        """
        conversation = self.conversation
        if not self.saved:
            await conversation.ensure(lambda held: not all(m.role == "user" for m in held))
            held = conversation.messages
            return held if all(m.role == "user" for m in held) else []
        last = self.cp.last_message_id
        if last is None:
            await conversation.ensure(lambda held: True)
            return None
        await conversation.ensure(lambda held: any(m.id == last for m in held))
        held = conversation.messages
        for index in range(len(held) - 1, -1, -1):
            if held[index].id == last:
                return held[index + 1 :]
        return None

    async def _load(self, checkpoint_id: str | None) -> None:
        latest = await self._load_checkpoint(checkpoint_id)
        if self.wf._termination is not None:
            # The condition is called with the whole conversation after every step.
            await self.conversation.whole()
        ahead = await self._stored_after_checkpoint()
        if not latest and ahead != []:
            # Going on from here would answer an earlier point of a conversation that has
            # moved on, and a stored history is never rewound.
            if ahead is None:
                moved = "its newest message is no longer stored"
            elif len(ahead) == 1:
                moved = "1 message was stored after it"
            else:
                moved = f"{len(ahead)} messages were stored after it"
            raise InvalidArgument(
                "checkpoint_id",
                checkpoint_id,
                f"the conversation of session {self.session_id!r} moved on since this "
                f"checkpoint ({moved}); a stored conversation is never rewound, so go on from "
                "the latest checkpoint (run() without checkpoint_id) or start a new session",
            )
        self._ahead = ahead or []

    async def _store(self, batch: list[ChatMessage]) -> None:
        if batch:
            await self.wf.history.add_messages(self.session_id, batch)
            self.conversation.extend(batch)

    async def _checkpoint(self, **changes: Any) -> None:
        update = {
            **changes,
            "id": uuid.uuid4().hex,
            "parent_id": self.cp.id if self.saved else None,
            "created_at": _now(),
            "session": self.session.to_dict(),
            "last_message_id": newest.id if (newest := self.conversation.newest) else None,
        }
        checkpoint = self.cp.model_copy(update=update)
        await self.wf.checkpoints.save_checkpoint(checkpoint)
        self.cp = checkpoint
        self.saved = True

    async def _apply(
        self, plan: Plan, stored: Sequence[ChatMessage] = (), *, persist: bool = True
    ) -> None:
        """Store the plan's messages that are not in `stored` yet, then save its checkpoint.

        With `persist=False` nothing is written; the state moves on in memory only.
        """
        if stored:
            twins = {_twin_key(message): message for message in stored}
            plan.batch = [twins.get(_twin_key(message), message) for message in plan.batch]
        known = {message.id for message in stored}
        new = [message for message in plan.batch if message.id not in known]
        if persist:
            await self._store(new)
            await self._checkpoint(**plan.changes)
        else:
            self.conversation.extend(new)
            self.cp = self.cp.model_copy(update=plan.changes)

    async def _events(self, plan: Plan) -> list[WorkflowEvent]:
        events = list(plan.events)
        if plan.stop is not None:
            reason, detail = plan.stop
            events.append(
                WorkflowOutput(
                    reason=reason,
                    detail=detail,
                    conversation=tuple(await self.conversation.whole()),
                    session_id=self.session_id,
                    answer=plan.answer,
                    state=self.cp.state,
                )
            )
        return events

    # -- entry points ---------------------------------------------------------------------------

    async def pending_requests(self) -> list[UserInputRequest | ToolApprovalRequest]:
        """Load the thread and return the requests its latest checkpoint waits on (after
        completing, in memory only, a transition stored but not checkpointed)."""
        await self._load(None)
        await self._recover(persist=False)
        return await self._requests()

    async def _requests(self) -> list[UserInputRequest | ToolApprovalRequest]:
        if self.cp.status != "waiting":
            return []
        out: list[UserInputRequest | ToolApprovalRequest] = []
        for pending in self.cp.pending:
            if pending.kind == "user_input":
                await self.conversation.ensure(lambda held: any(map(_is_real_user, held)))
                out.append(
                    UserInputRequest(
                        request_id=pending.request_id,
                        agent=pending.agent,
                        messages=_since_user(self.conversation.messages),
                    )
                )
            elif pending.decision is None and pending.tool_call is not None:
                out.append(
                    ToolApprovalRequest(
                        request_id=pending.request_id,
                        agent=pending.agent,
                        tool_call=pending.tool_call,
                    )
                )
        return out

    async def drive(
        self,
        message: AgentInput | None,
        responses: Mapping[str, Response] | None,
        checkpoint_id: str | None,
    ) -> AsyncIterator[WorkflowEvent]:
        """Apply the input (a message, responses, or nothing to resume) and run steps until
        the thread waits or ends, yielding every event."""
        if message is not None and responses is not None:
            raise InvalidArgument("responses", responses, "pass a message or responses, not both")
        inputs = as_input_messages(message) if message is not None else None
        await self._load(checkpoint_id)
        for event in await self._recover(persist=True):
            yield event
        if inputs is not None:
            # A retried message whose first attempt was stored is not stored twice.
            if not _same_input(self._replayed, inputs):
                if self.cp.status == "waiting":
                    waiting = [p.request_id for p in self.cp.pending]
                    raise InvalidArgument(
                        "message",
                        message,
                        f"session {self.session_id!r} waits for responses to requests "
                        f"{waiting}; answer them with run(responses=...)",
                    )
                async for event in self._user_input(inputs):
                    yield event
        elif responses is not None:
            # Retried answers whose results were stored are not applied twice.
            retried = isinstance(responses, Mapping) and bool(responses)
            if not (retried and self._answered and set(responses) <= self._answered):
                async for event in answer_requests(self, responses):
                    yield event
        elif not self.saved:
            raise InvalidArgument(
                "message",
                None,
                f"session {self.session_id!r} of workflow {self.wf.name!r} has nothing to "
                "resume; start it with run(message)",
            )
        while self.cp.status == "running":
            async for event in self._step():
                yield event
        for request in await self._requests():
            yield request

    async def _recover(self, *, persist: bool) -> list[WorkflowEvent]:
        """Complete the transition whose messages were stored after the checkpoint but whose
        own checkpoint was not saved; return its events."""
        ahead = self._ahead
        if not ahead:
            return []
        held = self.conversation.messages
        before = held[: len(held) - len(ahead)]
        cp = self.cp
        first = ahead[0]
        participant = self.wf.agents[cp.current_agent]
        # A team paused on approvals answers from its sub-session; its reply ends the pause.
        team_paused = cp.status == "waiting" and isinstance(participant, Team)
        if (
            (cp.status == "running" or team_paused)
            and first.role == "assistant"
            and agent_of(first) == cp.current_agent
        ):
            if isinstance(participant, Team):
                plan = await Planner(self.wf, cp).step(participant.name, before, first, {})
                await self._apply(plan, ahead, persist=persist)
                self._answered = {p.request_id for p in cp.pending}
                return await self._events(plan)
            agent = participant
            routes = self.wf._route_tools(agent.name)
            own = {c.id for c in first.tool_calls if c.name not in routes}
            ran = {
                m.tool_call_id: m
                for m in ahead
                if m.role == "tool"
                and m.tool_call_id in own
                and m.metadata.get(TOOL_ERROR_KEY) != NOT_RUN
            }
            sent: list[ChatMessage] = []
            if persist:
                # What the model was sent: the agent's window of the conversation before it.
                sent = await self.conversation.window(
                    agent.reducer, AgentView(agent.name, "assistant"), drop=len(ahead)
                )
            await self._looks_back(agent.name, drop=len(ahead))
            before = self.conversation.messages[: -len(ahead)]
            plan = await Planner(self.wf, cp).step(agent.name, before, first, ran)
            await self._apply(plan, ahead, persist=persist)
            if persist:
                answer = [m for m in plan.batch if m.role in ("assistant", "tool")]
                await notify_invoked(agent.context_providers, self.session, sent, answer, None)
            return await self._events(plan)
        approvals = [p for p in cp.pending if p.kind == "tool_approval" and p.tool_call]
        results = {m.tool_call_id: m for m in ahead if m.role == "tool" and m.tool_call_id}
        if (
            cp.status == "waiting"
            and approvals
            and all(p.tool_call is not None and p.tool_call.id in results for p in approvals)
        ):
            plan = await Planner(self.wf, cp).approved(before, approvals, results)
            await self._apply(plan, ahead, persist=persist)
            self._answered = {p.request_id for p in approvals}
            return await self._events(plan)
        asking = {p.request_id for p in cp.pending if p.kind == "user_input"}
        if all(m.role == "user" for m in ahead) and (cp.status != "waiting" or asking):
            plan = await Planner(self.wf, cp).input(before, ahead)
            await self._apply(plan, ahead, persist=persist)
            self._answered = asking
            self._replayed = list(ahead)
            return await self._events(plan)
        if self.saved:
            logger.warning(
                "workflow %r, session %r: %d stored messages after checkpoint %s come from no "
                "step of this workflow; they are kept as part of the conversation",
                self.wf.name,
                self.session_id,
                len(ahead),
                cp.id,
            )
        return []

    # -- inputs ---------------------------------------------------------------------------------

    async def _user_input(self, inputs: list[ChatMessage]) -> AsyncIterator[WorkflowEvent]:
        plan = await Planner(self.wf, self.cp).input(self.conversation.messages, inputs)
        await self._apply(plan)
        for event in await self._events(plan):
            yield event

    # -- one step -------------------------------------------------------------------------------

    async def _run_calls(
        self, agent: Agent, calls: Sequence[ToolCall], tools: Mapping[str, Tool[..., Any]]
    ) -> list[ChatMessage]:
        """Run an agent's calls concurrently, handing them the shared state and keeping the
        state changes and routes they return (see `_step_calls`)."""
        results: list[ChatMessage] = []
        async for item in self._calls(agent, calls, tools, stream=False):
            if isinstance(item, list):
                results = item
        return results

    def _calls(
        self,
        agent: Agent,
        calls: Sequence[ToolCall],
        tools: Mapping[str, Tool[..., Any]],
        *,
        stream: bool,
    ) -> AsyncIterator[TextDelta | ToolCallDelta | list[ChatMessage]]:
        return step_calls(
            calls,
            tools,
            agent=agent.name,
            session_id=self.session_id,
            history=self.wf.history,
            spec=self.wf._state,
            state=self.cp.state,
            stream=stream,
        )

    async def _step(self) -> AsyncIterator[WorkflowEvent]:
        participant = self.wf.agents[self.cp.current_agent]
        if isinstance(participant, Team):
            from memweave.orchestration._team_step import team_step

            async for event in team_step(self, participant):
                yield event
            return
        agent = participant
        routes = self.wf._route_tools(agent.name)
        window = await self.conversation.window(agent.reducer, AgentView(agent.name, "assistant"))
        await self._looks_back(agent.name)
        before = self.conversation.messages
        prepared = await agent._prepare(
            self.session, window, extra_tools=list(routes.values()), reduced=True
        )
        allow = self.cp.tool_rounds < agent.max_tool_rounds
        try:
            response: ChatResponse | None = None
            if self.stream:
                # Deltas are yielded as they come; the step is stored only once it is whole.
                deltas = agent._stream_model(
                    prepared, allow_tools=allow, session_id=self.session_id
                )
                async with contextlib.aclosing(deltas):
                    async for item in deltas:
                        if isinstance(item, ChatResponse):
                            response = item
                        else:
                            yield item
            else:
                response = await agent._call_model(prepared, allow_tools=allow)
            if response is None:
                raise ModelError(f"agent {agent.name!r}: the model's stream ended without a reply")
            if response.message.tool_calls and not allow:
                raise ModelError(
                    f"agent {agent.name!r}: the model kept calling tools after "
                    f"max_tool_rounds={agent.max_tool_rounds} rounds"
                )
        except Exception as exc:
            await notify_failure(agent.context_providers, self.session, prepared.conversation, exc)
            raise
        reply = tag_messages([response.message], agent.name)[0]
        to_run = []
        for call in reply.tool_calls:
            selected = prepared.tools.get(call.name)
            if call.name not in routes and (selected is None or selected.approval != "always"):
                to_run.append(call)
        ran: list[ChatMessage] = []
        async for done in self._calls(agent, to_run, prepared.tools, stream=self.stream):
            if isinstance(done, list):
                ran = done
            else:
                yield done
        ran_by_id = {call.id: result for call, result in zip(to_run, ran, strict=True)}
        plan = await Planner(self.wf, self.cp).step(agent.name, before, reply, ran_by_id)
        await self._apply(plan)
        answer = [m for m in plan.batch if m.role in ("assistant", "tool")]
        await notify_invoked(
            agent.context_providers, self.session, prepared.conversation, answer, None
        )
        for event in await self._events(plan):
            yield event

    async def _looks_back(self, agent: str, *, drop: int = 0) -> None:
        """Hold the conversation (without its newest `drop` messages) back to where `agent`
        last got it or wrote, which the ping-pong guard of its next step may look for."""
        if self.wf._ping_pong and len(self.cp.trail) >= 2:
            await self.conversation.ensure(
                lambda held: handed_over_or_wrote(held[: len(held) - drop], agent)
            )
