"""Planning the transitions of a handoff run: what each stores, where it leads, what it yields.

A `Planner` turns what happened (user input, a model reply and the results of the calls that
ran, the answers to tool approvals) into a `Plan`, from the checkpoint taken before it. It
calls no model and runs no tool, so the engine can plan a transition again from its stored
messages when the run stopped before checkpointing it, and get the same outcome. Which
routes of a message are carried out is decided by `_routing.RouteDecider`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._events import AgentMessage, Handoff, StopReason, WorkflowEvent
from memweave.orchestration._routing import (
    NOT_RUN,
    Decision,
    Route,
    RouteDecider,
    handed_over_or_wrote,
)
from memweave.orchestration._runtime import call_maybe_async
from memweave.orchestration._state import StateUpdateInvalid, command_of
from memweave.orchestration._views import HANDOFF_KEY, tag_messages
from memweave.orchestration.checkpoints import Checkpoint, PendingHandoff, PendingRequest
from memweave.orchestration.tools import TOOL_ERROR_KEY, ToolArgumentsInvalid

if TYPE_CHECKING:
    from memweave.orchestration.handoff import HandoffWorkflow

__all__ = [
    "AUTONOMOUS_KEY",
    "END_ANSWER_KEY",
    "NOT_RUN",
    "Plan",
    "Planner",
    "handed_over_or_wrote",
]

AUTONOMOUS_KEY = "memweave.autonomous"
"""Metadata key marking a continue prompt sent to an autonomous agent."""

END_ANSWER_KEY = "memweave.end_answer"
"""Metadata key marking the answer an agent passed to `end_run`, stored as its message."""

_TERMINATED: tuple[StopReason, str] = ("termination_condition", "the termination condition was met")
_FINISHED: dict[str, Any] = {
    "status": "idle",
    "pending": (),
    "pending_handoff": None,
    "queue": (),
    "tool_rounds": 0,
}


def _note(call: ToolCall, text: str, kind: str | None = None) -> ChatMessage:
    metadata = {TOOL_ERROR_KEY: kind} if kind else {}
    return ChatMessage.tool(call.id, text, metadata=metadata)


def _request_id(*parts: str) -> str:
    """A request id derived from the step that asks, so planning the step again asks under
    the same id."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


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
    answer: str = ""
    """The final answer, when an agent ended the run."""

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

    def _tool_updates(
        self, state: dict[str, JsonValue] | None, results: Sequence[ChatMessage]
    ) -> tuple[dict[str, JsonValue] | None, list[tuple[ChatMessage, str]]]:
        """Apply the state updates stored on tool results (checked when the tools ran) and
        return the new state and the routes the results ask for."""
        gotos: list[tuple[ChatMessage, str]] = []
        spec = self.wf._state
        for result in results:
            found = command_of(result)
            if found is None:
                continue
            goto, update = found
            if update and spec is not None:
                # Checked when the tool ran; should the schema have changed since, the update
                # is dropped (the tool's result already says it ran).
                with contextlib.suppress(StateUpdateInvalid):
                    state = spec.apply(state or {}, update)
            if goto is not None:
                gotos.append((result, goto))
        return state, gotos

    async def input(self, before: Sequence[ChatMessage], inputs: Sequence[ChatMessage]) -> Plan:
        """The user said something: the agent in control answers next, counters restart."""
        plan = Plan(
            batch=list(inputs),
            changes={
                "status": "running",
                "pending": (),
                "pending_handoff": None,
                "queue": (),
                "handoffs": 0,
                "trail": (self.cp.current_agent,),
                "autonomous_turns": {},
                "delegations": {},
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
        them, then carry out the step's handoff (or a route a tool asked for) or let the
        agent go on."""
        agent = decided[0].agent if decided else self.cp.current_agent
        batch = [results[r.tool_call.id] for r in decided if r.tool_call is not None]
        state, gotos = self._tool_updates(self.cp.state, batch)
        calls = {r.tool_call.id: r.tool_call for r in decided if r.tool_call is not None}
        decider = RouteDecider(self.wf, self.cp, agent, before, "")
        d = decider.start(state, self.cp.pending_handoff)
        for result, goto in gotos:
            call = calls[result.tool_call_id or ""]
            route = Route(call=call, target=goto, from_tool=True, answer=result.text)
            text, kind = decider.decide(route, d)
            if kind is not None:
                position = batch.index(result)
                batch[position] = result.model_copy(update={"content": f"{result.text} {text}"})
        plan = Plan(batch=batch)
        self._keep(plan, d)
        conversation = [*before, *batch]
        if d.stop is None and await self._terminated(conversation):
            d.stop = _TERMINATED
        if d.stop is not None:
            if d.stop[0] == "ended":
                self._end_answer(plan, agent, "", d.answer)
            plan.finish(*d.stop)
        elif d.handoff is not None:
            plan.changes["queue"] = (*d.queue, *self.cp.queue)
            await self._handoff(plan, conversation, d.handoff)
        else:
            plan.changes.update(
                status="running",
                pending=(),
                pending_handoff=None,
                tool_rounds=self.cp.tool_rounds + 1,
            )
        return plan

    def _end_answer(self, plan: Plan, agent: str, text: str, answer: str) -> None:
        """The run ends: its answer is the agent's text, or else the answer it passed (to
        `end_run`, or as the result of the tool that ended it), stored as its message."""
        plan.answer = text if text.strip() else answer
        if not text.strip() and answer.strip():
            final = ChatMessage.assistant(answer, metadata={END_ANSWER_KEY: True})
            tagged = tag_messages([final], agent)[0]
            plan.batch.append(tagged)
            plan.events.append(AgentMessage(agent=agent, message=tagged))

    def _keep(self, plan: Plan, d: Decision) -> None:
        """Record the decision's counters and state in the plan's checkpoint changes."""
        plan.changes.update(handoffs=d.handoffs, delegations=d.delegations)
        if self.wf._state is not None:
            plan.changes["state"] = d.state

    async def step(
        self,
        agent: str,
        before: Sequence[ChatMessage],
        reply: ChatMessage,
        ran: Mapping[str, ChatMessage],
    ) -> Plan:
        """Plan a step from the model's reply and the results of the calls that ran; calls
        that neither ran nor are routes wait for approval."""
        route_tools = self.wf._route_tools(agent)
        results: dict[str, ChatMessage] = {}
        waiting: list[ToolCall] = []
        routes: list[Route] = []
        own = [ran[c.id] for c in reply.tool_calls if c.id in ran]
        state, gotos = self._tool_updates(self.cp.state, own)
        asked = {result.tool_call_id: goto for result, goto in gotos}
        for call in reply.tool_calls:
            target = self.wf._route_target(agent, call.name)
            if target is None:
                if call.id in ran:
                    results[call.id] = ran[call.id]
                    if call.id in asked:
                        answer = ran[call.id].text
                        routes.append(
                            Route(call=call, target=asked[call.id], from_tool=True, answer=answer)
                        )
                else:
                    waiting.append(call)
                continue
            try:
                args = route_tools[call.name].validate_arguments(call.arguments)
            except ToolArgumentsInvalid as exc:
                results[call.id] = _note(
                    call,
                    f"Error: invalid arguments for {call.name!r}: {'; '.join(exc.errors)}.",
                    "invalid_arguments",
                )
                continue
            routes.append(
                Route(
                    call=call,
                    target=target,
                    reason=args.get("reason", ""),
                    task=args.get("task", ""),
                    update=args.get("update"),
                    answer=args.get("answer", ""),
                )
            )
        decider = RouteDecider(self.wf, self.cp, agent, before, reply.text)
        d = decider.start(state)
        for route in routes:
            text, kind = decider.decide(route, d)
            if not route.from_tool:
                results[route.call.id] = _note(route.call, text, kind)
            elif kind is not None:
                result = results[route.call.id]
                results[route.call.id] = result.model_copy(
                    update={"content": f"{result.text} {text}"}
                )
        stop = d.stop
        if stop is not None:
            for call in waiting:
                results[call.id] = _note(call, "Not run: the workflow stopped.", NOT_RUN)
            waiting = []
        answered = [results[call.id] for call in reply.tool_calls if call.id in results]
        plan = Plan(
            batch=[reply, *tag_messages(answered, agent)],
            events=[AgentMessage(agent=agent, message=reply)],
        )
        self._keep(plan, d)
        if stop is not None and stop[0] == "ended":
            self._end_answer(plan, agent, reply.text, d.answer)
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
            plan.changes.update(
                status="waiting",
                pending=pending,
                pending_handoff=d.handoff,
                queue=(*d.queue, *self.cp.queue),
            )
        elif d.handoff is not None:
            plan.changes["queue"] = (*d.queue, *self.cp.queue)
            await self._handoff(plan, conversation, d.handoff)
        elif reply.tool_calls:
            plan.changes.update(tool_rounds=self.cp.tool_rounds + 1)
        else:
            await self._turn_end(plan, conversation, agent, reply)
        return plan

    async def _handoff(
        self,
        plan: Plan,
        conversation: Sequence[ChatMessage],
        handoff: PendingHandoff,
        *,
        automatic: bool = False,
    ) -> None:
        source, target = handoff.source, handoff.target
        if source == target:
            lines = [f"You ({target}) routed the conversation back to yourself."]
        elif automatic and self.wf._returns.get(source) == target:
            lines = [
                f"{source} finished its task and handed the conversation back to you "
                f"({target}); its answer is above."
            ]
        else:
            lines = [f"{source} handed the conversation over to you ({target})."]
        if handoff.reason:
            lines.append(f"Reason: {handoff.reason}")
        if handoff.task:
            lines.append(f"Task: {handoff.task}")
        if handoff.update:
            lines.append(f"State update: {json.dumps(handoff.update, ensure_ascii=False)}")
        note = ChatMessage.system(
            "\n".join(lines), metadata={HANDOFF_KEY: handoff.model_dump(mode="json")}
        )
        plan.batch.append(note)
        plan.changes.update(
            status="running",
            current_agent=target,
            pending=(),
            pending_handoff=None,
            trail=(*self.cp.trail, target),
            tool_rounds=0,
        )
        plan.events.append(
            Handoff(
                source=source,
                target=target,
                reason=handoff.reason,
                task=handoff.task,
                automatic=automatic,
            )
        )
        if await self._terminated([*conversation, note]):
            plan.finish(*_TERMINATED)

    async def _turn_end(
        self, plan: Plan, conversation: Sequence[ChatMessage], agent: str, reply: ChatMessage
    ) -> None:
        """The agent answered without handing off: return to its supervisor (or go on to the
        next queued worker), continue it (autonomous), or ask the user."""
        supervisor = self.wf._returns.get(agent)
        if supervisor is not None:
            queue = self.cp.queue
            if queue:
                plan.changes["queue"] = queue[1:]
                await self._handoff(plan, conversation, queue[0], automatic=True)
            else:
                back = PendingHandoff(source=agent, target=supervisor)
                await self._handoff(plan, conversation, back, automatic=True)
            return
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
