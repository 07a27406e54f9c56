"""Planning the transitions of a handoff run: what each stores, where it leads, what it yields.

A `Planner` turns what happened (user input, a model reply and the results of the calls that
ran, the answers to tool approvals) into a `Plan`, from the checkpoint taken before it. It
calls no model and runs no tool, so the engine can plan a transition again from its stored
messages when the run stopped before checkpointing it, and get the same outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import call_maybe_async
from memweave.orchestration._views import HANDOFF_KEY, agent_of, tag_messages
from memweave.orchestration.checkpoints import Checkpoint, PendingHandoff, PendingRequest
from memweave.orchestration.handoff import (
    HANDOFF_TOOL_PREFIX,
    AgentMessage,
    Handoff,
    StopReason,
    WorkflowEvent,
)
from memweave.orchestration.tools import TOOL_ERROR_KEY, ToolArgumentsInvalid

if TYPE_CHECKING:
    from memweave.orchestration.handoff import HandoffWorkflow

__all__ = ["AUTONOMOUS_KEY", "NOT_RUN", "Plan", "Planner", "handed_over_or_wrote"]

AUTONOMOUS_KEY = "memweave.autonomous"
"""Metadata key marking a continue prompt sent to an autonomous agent."""

NOT_RUN = "not_run"
"""`TOOL_ERROR_KEY` of the result the workflow writes for a call it did not carry out."""

_TERMINATED: tuple[StopReason, str] = ("termination_condition", "the termination condition was met")
_FINISHED: dict[str, Any] = {
    "status": "idle",
    "pending": (),
    "pending_handoff": None,
    "tool_rounds": 0,
}


def _note(call: ToolCall, text: str, kind: str | None = None) -> ChatMessage:
    metadata = {TOOL_ERROR_KEY: kind} if kind else {}
    return ChatMessage.tool(call.id, text, metadata=metadata)


def _request_id(*parts: str) -> str:
    """A request id derived from the step that asks, so planning the step again asks under
    the same id."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def _since_handoff(conversation: Sequence[ChatMessage], agent: str) -> bool | None:
    """Whether `agent` wrote any text since the conversation was last handed over to it, or
    None when `conversation` holds neither."""
    for message in reversed(conversation):
        note = message.metadata.get(HANDOFF_KEY)
        if message.role == "system" and isinstance(note, dict) and note.get("target") == agent:
            return False
        if message.role == "assistant" and agent_of(message) == agent and message.text.strip():
            return True
    return None


def _wrote_since_handoff(conversation: Sequence[ChatMessage], agent: str) -> bool:
    """Whether `agent` wrote any text since the conversation was last handed over to it."""
    return bool(_since_handoff(conversation, agent))


def handed_over_or_wrote(conversation: Sequence[ChatMessage], agent: str) -> bool:
    """Whether `conversation` holds a handoff to `agent` or text by it: the newest part of a
    conversation that does tells `_wrote_since_handoff` what the whole one would."""
    return _since_handoff(conversation, agent) is not None


@dataclass
class Plan:
    """One transition: the messages it stores, its checkpoint changes, the events it yields."""

    batch: list[ChatMessage] = field(default_factory=list)
    """Stored as one `add_messages` batch."""
    changes: dict[str, Any] = field(default_factory=dict)
    """The fields of the checkpoint the transition leads to."""
    events: list[WorkflowEvent] = field(default_factory=list)
    """Yielded once the checkpoint is saved (a final `WorkflowOutput` is added then)."""
    stop: tuple[StopReason, str] | None = None
    """Why the run ends here, when it does."""

    def finish(self, reason: StopReason, detail: str) -> None:
        """End the run with this transition."""
        self.stop = (reason, detail)
        self.changes.update(_FINISHED)


class Planner:
    """Plans transitions of one workflow thread from the checkpoint taken before them."""

    def __init__(self, workflow: HandoffWorkflow, checkpoint: Checkpoint) -> None:
        self.wf = workflow
        self.cp = checkpoint

    async def _terminated(self, conversation: Sequence[ChatMessage]) -> bool:
        condition = self.wf._termination
        if condition is None:
            return False
        return bool(await call_maybe_async(condition, list(conversation)))

    async def input(self, before: Sequence[ChatMessage], inputs: Sequence[ChatMessage]) -> Plan:
        """The user said something: the agent in control answers next, counters restart."""
        plan = Plan(
            batch=list(inputs),
            changes={
                "status": "running",
                "pending": (),
                "pending_handoff": None,
                "handoffs": 0,
                "trail": (self.cp.current_agent,),
                "autonomous_turns": {},
                "tool_rounds": 0,
            },
        )
        if await self._terminated([*before, *inputs]):
            plan.finish(*_TERMINATED)
        return plan

    async def approved(
        self,
        before: Sequence[ChatMessage],
        decided: Sequence[PendingRequest],
        results: Mapping[str, ChatMessage],
    ) -> Plan:
        """Every pending approval was answered and `results` holds a result per call: store
        them, then carry out the step's handoff or let the agent go on."""
        batch = [results[r.tool_call.id] for r in decided if r.tool_call is not None]
        plan = Plan(batch=batch)
        conversation = [*before, *batch]
        if await self._terminated(conversation):
            plan.finish(*_TERMINATED)
            return plan
        handoff = self.cp.pending_handoff
        if handoff is not None:
            await self._handoff(plan, conversation, handoff)
            return plan
        plan.changes.update(
            status="running", pending=(), pending_handoff=None, tool_rounds=self.cp.tool_rounds + 1
        )
        return plan

    async def step(
        self,
        agent: str,
        before: Sequence[ChatMessage],
        reply: ChatMessage,
        ran: Mapping[str, ChatMessage],
    ) -> Plan:
        """Plan a step from the model's reply and the results of the calls that ran; calls
        that neither ran nor are handoffs wait for approval."""
        routes = self.wf._route_tools(agent)
        handoff: PendingHandoff | None = None
        stop: tuple[StopReason, str] | None = None
        results: dict[str, ChatMessage] = {}
        waiting: list[ToolCall] = []
        for call in reply.tool_calls:
            if call.name not in routes:
                if call.id in ran:
                    results[call.id] = ran[call.id]
                else:
                    waiting.append(call)
                continue
            target = call.name.removeprefix(HANDOFF_TOOL_PREFIX)
            if handoff is not None or stop is not None:
                went = f"went to {handoff.target}" if handoff else "stopped"
                results[call.id] = _note(
                    call,
                    f"Not handed off to {target}: one handoff per turn is carried out, and "
                    f"this turn's conversation {went}.",
                    NOT_RUN,
                )
                continue
            try:
                args = routes[call.name].validate_arguments(call.arguments)
            except ToolArgumentsInvalid as exc:
                results[call.id] = _note(
                    call,
                    f"Error: invalid arguments for {call.name!r}: {'; '.join(exc.errors)}.",
                    "invalid_arguments",
                )
                continue
            stop = self._refusal(agent, target, before, reply)
            if stop is not None:
                results[call.id] = _note(
                    call, f"Handoff to {target} was not carried out: {stop[1]}.", "refused"
                )
                continue
            handoff = PendingHandoff(
                source=agent, target=target, reason=args["reason"], task=args["task"]
            )
            results[call.id] = _note(call, f"Handed off to {target}.")
        if stop is not None:
            for call in waiting:
                results[call.id] = _note(call, "Not run: the workflow stopped.", NOT_RUN)
            waiting = []
        answered = [results[call.id] for call in reply.tool_calls if call.id in results]
        plan = Plan(
            batch=[reply, *tag_messages(answered, agent)],
            events=[AgentMessage(agent=agent, message=reply)],
        )
        conversation = [*before, *plan.batch]
        if stop is None and await self._terminated(conversation):
            stop = _TERMINATED
            unrun = [_note(c, "Not run: the workflow ended.", NOT_RUN) for c in waiting]
            plan.batch.extend(tag_messages(unrun, agent))
            waiting = []
        if stop is not None:
            plan.finish(*stop)
        elif waiting:
            pending = tuple(
                PendingRequest(
                    request_id=_request_id(reply.id, call.id),
                    kind="tool_approval",
                    agent=agent,
                    tool_call=call,
                )
                for call in waiting
            )
            plan.changes.update(status="waiting", pending=pending, pending_handoff=handoff)
        elif handoff is not None:
            await self._handoff(plan, conversation, handoff)
        elif reply.tool_calls:
            plan.changes.update(tool_rounds=self.cp.tool_rounds + 1)
        else:
            await self._turn_end(plan, conversation, agent, reply)
        return plan

    def _refusal(
        self, source: str, target: str, before: Sequence[ChatMessage], reply: ChatMessage
    ) -> tuple[StopReason, str] | None:
        limit = self.wf._max_handoffs
        if limit is not None and self.cp.handoffs >= limit:
            return "max_handoffs", f"the limit of {limit} handoffs per user message was reached"
        trail = self.cp.trail
        if not self.wf._ping_pong or len(trail) < 2 or trail[-2:] != (target, source):
            return None
        # A hand-back is fine when the agent said why (a wrongly routed question goes back to
        # triage, which routes it again); bouncing between the same two agents again is not.
        if len(trail) >= 3 and trail[-3] == source:
            return (
                "ping_pong",
                f"{source} would hand the conversation to {target} again after {target} "
                f"handed it back ({source} -> {target} -> {source} -> {target})",
            )
        if not reply.text.strip() and not _wrote_since_handoff(before, source):
            return (
                "ping_pong",
                f"{source} would hand the conversation straight back to {target}, which just "
                f"handed it over, without writing anything ({target} -> {source} -> {target})",
            )
        return None

    async def _handoff(
        self, plan: Plan, conversation: Sequence[ChatMessage], handoff: PendingHandoff
    ) -> None:
        lines = [f"{handoff.source} handed the conversation over to you ({handoff.target})."]
        if handoff.reason:
            lines.append(f"Reason: {handoff.reason}")
        if handoff.task:
            lines.append(f"Task: {handoff.task}")
        note = ChatMessage.system("\n".join(lines), metadata={HANDOFF_KEY: handoff.model_dump()})
        plan.batch.append(note)
        plan.changes.update(
            status="running",
            current_agent=handoff.target,
            pending=(),
            pending_handoff=None,
            handoffs=self.cp.handoffs + 1,
            trail=(*self.cp.trail, handoff.target),
            tool_rounds=0,
        )
        plan.events.append(
            Handoff(
                source=handoff.source,
                target=handoff.target,
                reason=handoff.reason,
                task=handoff.task,
            )
        )
        if await self._terminated([*conversation, note]):
            plan.finish(*_TERMINATED)

    async def _turn_end(
        self, plan: Plan, conversation: Sequence[ChatMessage], agent: str, reply: ChatMessage
    ) -> None:
        """The agent answered without handing off: continue it (autonomous) or ask the user."""
        autonomous = self.wf._autonomous.get(agent)
        used = self.cp.autonomous_turns.get(agent, 0)
        if autonomous is not None and used < autonomous[1]:
            prompt = ChatMessage.user(autonomous[0], metadata={AUTONOMOUS_KEY: True})
            plan.batch.append(prompt)
            plan.changes.update(
                status="running",
                tool_rounds=0,
                autonomous_turns={**self.cp.autonomous_turns, agent: used + 1},
            )
            if await self._terminated([*conversation, prompt]):
                plan.finish(*_TERMINATED)
            return
        request = PendingRequest(
            request_id=_request_id(reply.id, "user_input"), kind="user_input", agent=agent
        )
        plan.changes.update(status="waiting", pending=(request,), tool_rounds=0)
