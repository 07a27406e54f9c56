"""The step machine behind `HandoffWorkflow.run`: one model call per step, a checkpoint after each.

Invariants kept at every checkpoint: the stored conversation has a result for every tool
call except those the checkpoint lists as pending approval; a step (model reply and the
results of the calls it made) is stored as one batch after the model answered, so a failed
model call stores nothing and the last checkpoint (status `running`) re-runs it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memweave.errors import InvalidArgument, ModelError
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import (
    AgentInput,
    as_input_messages,
    call_maybe_async,
    denied_result,
    notify_invoked,
)
from memweave.orchestration._views import HANDOFF_KEY, agent_view, tag_messages
from memweave.orchestration.checkpoints import (
    ApprovalDecision,
    Checkpoint,
    PendingHandoff,
    PendingRequest,
)
from memweave.orchestration.handoff import (
    HANDOFF_TOOL_PREFIX,
    AgentMessage,
    Handoff,
    Response,
    StopReason,
    TerminateRun,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.orchestration.tools import TOOL_ERROR_KEY, ToolArgumentsInvalid, run_tool_calls
from memweave.session import Session

if TYPE_CHECKING:
    from memweave.orchestration.handoff import HandoffWorkflow

__all__ = ["AUTONOMOUS_KEY", "Run"]

AUTONOMOUS_KEY = "memweave.autonomous"
"""Metadata key marking a continue prompt sent to an autonomous agent."""


def _now() -> datetime:
    return datetime.now(UTC)


def _note(call: ToolCall, text: str, kind: str | None = None) -> ChatMessage:
    metadata = {TOOL_ERROR_KEY: kind} if kind else {}
    return ChatMessage.tool(call.id, text, metadata=metadata)


def _since_user(conversation: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The messages after the last real (not autonomous) user message."""
    for index in range(len(conversation) - 1, -1, -1):
        message = conversation[index]
        if message.role == "user" and not message.metadata.get(AUTONOMOUS_KEY):
            return tuple(conversation[index + 1 :])
    return tuple(conversation)


class Run:
    """One call of `HandoffWorkflow.run`: loads the thread, applies the input, drives steps."""

    def __init__(self, workflow: HandoffWorkflow, session: Session | str | None) -> None:
        self.wf = workflow
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
        )
        self.saved = False
        self.conversation: list[ChatMessage] = []

    # -- loading and saving ---------------------------------------------------------------------

    async def _load_checkpoint(self, checkpoint_id: str | None) -> None:
        found = await self.wf.checkpoints.get_checkpoint(
            self.wf.name, self.session_id, checkpoint_id
        )
        if found is None:
            if checkpoint_id is not None:
                raise InvalidArgument(
                    "checkpoint_id",
                    checkpoint_id,
                    f"no such checkpoint for workflow {self.wf.name!r} and session "
                    f"{self.session_id!r}",
                )
            return
        if found.current_agent not in self.wf.agents:
            raise InvalidArgument(
                "checkpoint_id",
                found.id,
                f"the checkpoint's agent {found.current_agent!r} is not a participant of "
                f"workflow {self.wf.name!r}",
            )
        self.cp = found
        self.saved = True
        if self._given_session is None and found.session:
            self.session = Session.from_dict(dict(found.session))

    async def _load(self, checkpoint_id: str | None) -> None:
        await self._load_checkpoint(checkpoint_id)
        self.conversation = await self.wf.history.list_messages(self.session_id)

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
        }
        checkpoint = self.cp.model_copy(update=update)
        await self.wf.checkpoints.save_checkpoint(checkpoint)
        self.cp = checkpoint
        self.saved = True

    async def _terminated(self) -> bool:
        condition = self.wf._termination
        if condition is None:
            return False
        return bool(await call_maybe_async(condition, list(self.conversation)))

    async def _finish(self, reason: StopReason, detail: str) -> AsyncIterator[WorkflowEvent]:
        await self._checkpoint(status="idle", pending=(), pending_handoff=None, tool_rounds=0)
        yield WorkflowOutput(
            reason=reason,
            detail=detail,
            conversation=tuple(self.conversation),
            session_id=self.session_id,
        )

    # -- entry points ---------------------------------------------------------------------------

    async def pending_requests(self) -> list[UserInputRequest | ToolApprovalRequest]:
        """Load the thread and return the requests its latest checkpoint waits on."""
        await self._load(None)
        return self._requests()

    def _requests(self) -> list[UserInputRequest | ToolApprovalRequest]:
        if self.cp.status != "waiting":
            return []
        out: list[UserInputRequest | ToolApprovalRequest] = []
        for pending in self.cp.pending:
            if pending.kind == "user_input":
                out.append(
                    UserInputRequest(
                        request_id=pending.request_id,
                        agent=pending.agent,
                        messages=_since_user(self.conversation),
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
        if inputs is not None:
            if self.cp.status == "waiting":
                waiting = [p.request_id for p in self.cp.pending]
                raise InvalidArgument(
                    "message",
                    message,
                    f"session {self.session_id!r} waits for responses to requests {waiting}; "
                    "answer them with run(responses=...)",
                )
            async for event in self._user_input(inputs):
                yield event
        elif responses is not None:
            async for event in self._answer(responses):
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
        for request in self._requests():
            yield request

    # -- inputs ---------------------------------------------------------------------------------

    async def _user_input(self, inputs: list[ChatMessage]) -> AsyncIterator[WorkflowEvent]:
        await self._store(inputs)
        terminated = await self._terminated()
        await self._checkpoint(
            status="running",
            pending=(),
            pending_handoff=None,
            handoffs=0,
            trail=(self.cp.current_agent,),
            autonomous_turns={},
            tool_rounds=0,
        )
        if terminated:
            async for event in self._finish(
                "termination_condition", "the termination condition was met"
            ):
                yield event

    def _check_responses(self, responses: Mapping[str, Response]) -> dict[str, Response]:
        if self.cp.status != "waiting":
            raise InvalidArgument(
                "responses",
                responses,
                f"session {self.session_id!r} has no pending requests; use run(message)",
            )
        if not isinstance(responses, Mapping) or not responses:
            raise InvalidArgument("responses", responses, "expected {request_id: answer}")
        pending = {p.request_id: p for p in self.cp.pending}
        for request_id, answer in responses.items():
            request = pending.get(request_id)
            if request is None:
                raise InvalidArgument(
                    "responses",
                    request_id,
                    f"not a pending request id; pending: {sorted(pending)}",
                )
            if request.kind == "tool_approval":
                if request.decision is not None:
                    raise InvalidArgument("responses", request_id, "this call was answered already")
                if not isinstance(answer, bool | ApprovalDecision):
                    raise InvalidArgument(
                        f"responses[{request_id!r}]",
                        answer,
                        "a tool approval takes True/False, request.approve() or request.deny()",
                    )
            elif isinstance(answer, bool | ApprovalDecision):
                raise InvalidArgument(
                    f"responses[{request_id!r}]",
                    answer,
                    "a user input request takes text, messages, or request.terminate()",
                )
        return dict(responses)

    async def _answer(self, responses: Mapping[str, Response]) -> AsyncIterator[WorkflowEvent]:
        answers = self._check_responses(responses)
        user = next((p for p in self.cp.pending if p.kind == "user_input"), None)
        if user is not None:
            answer = answers[user.request_id]
            if isinstance(answer, TerminateRun):
                async for event in self._finish("user_terminated", "the user ended the run"):
                    yield event
                return
            inputs = as_input_messages(answer)  # type: ignore[arg-type]
            async for event in self._user_input(inputs):
                yield event
            return
        decided: list[PendingRequest] = []
        for request in self.cp.pending:
            given = answers.get(request.request_id)
            if isinstance(given, bool):
                given = ApprovalDecision(approved=given)
            if isinstance(given, ApprovalDecision):
                request = request.model_copy(update={"decision": given})
            decided.append(request)
        if any(request.decision is None for request in decided):
            await self._checkpoint(pending=tuple(decided))
            return
        async for event in self._run_approved(decided):
            yield event

    async def _run_approved(self, decided: list[PendingRequest]) -> AsyncIterator[WorkflowEvent]:
        results: dict[str, ChatMessage] = {}
        approved: dict[str, list[ToolCall]] = {}
        for request in decided:
            call, decision = request.tool_call, request.decision
            if call is None or decision is None:
                continue
            if decision.approved:
                approved.setdefault(request.agent, []).append(call)
            else:
                denied = denied_result(call, decision.reason)
                results[call.id] = tag_messages([denied], request.agent)[0]
        for agent_name, calls in approved.items():
            tools = {t.name: t for t in self.wf.agents[agent_name].tools}
            ran = await run_tool_calls(calls, tools)
            for call, result in zip(calls, ran, strict=True):
                results[call.id] = tag_messages([result], agent_name)[0]
        batch = [results[r.tool_call.id] for r in decided if r.tool_call is not None]
        await self._store(batch)
        handoff = self.cp.pending_handoff
        if await self._terminated():
            async for event in self._finish(
                "termination_condition", "the termination condition was met"
            ):
                yield event
            return
        if handoff is not None:
            async for event in self._hand_off(handoff):
                yield event
            return
        await self._checkpoint(
            status="running", pending=(), pending_handoff=None, tool_rounds=self.cp.tool_rounds + 1
        )

    # -- one step -------------------------------------------------------------------------------

    def _refusal(self, source: str, target: str) -> tuple[StopReason, str] | None:
        limit = self.wf._max_handoffs
        if limit is not None and self.cp.handoffs >= limit:
            return "max_handoffs", f"the limit of {limit} handoffs per user message was reached"
        trail = self.cp.trail
        if self.wf._ping_pong and len(trail) >= 2 and trail[-2] == target and trail[-1] == source:
            return (
                "ping_pong",
                f"{source} would hand the conversation straight back to {target}, which just "
                f"handed it to {source} (A -> B -> A)",
            )
        return None

    async def _step(self) -> AsyncIterator[WorkflowEvent]:
        agent = self.wf.agents[self.cp.current_agent]
        routes = self.wf._route_tools(agent.name)
        view = agent_view(self.conversation, agent.name, others_as="assistant")
        prepared = await agent._prepare(self.session, view, extra_tools=list(routes.values()))
        allow = self.cp.tool_rounds < agent.max_tool_rounds
        try:
            response = await agent._call_model(prepared, allow_tools=allow)
            if response.message.tool_calls and not allow:
                raise ModelError(
                    f"agent {agent.name!r}: the model kept calling tools after "
                    f"max_tool_rounds={agent.max_tool_rounds} rounds"
                )
        except Exception as exc:
            await notify_invoked(
                agent.context_providers, self.session, prepared.conversation, [], exc
            )
            raise
        reply = tag_messages([response.message], agent.name)[0]

        handoff: PendingHandoff | None = None
        stop: tuple[StopReason, str] | None = None
        results: dict[str, ChatMessage] = {}
        waiting: list[ToolCall] = []
        to_run: list[ToolCall] = []
        for call in reply.tool_calls:
            if call.name in routes:
                target = call.name.removeprefix(HANDOFF_TOOL_PREFIX)
                if handoff is not None or stop is not None:
                    went = f"went to {handoff.target}" if handoff else "stopped"
                    results[call.id] = _note(
                        call,
                        f"Not handed off to {target}: one handoff per turn is carried out, and "
                        f"this turn's conversation {went}.",
                        "not_run",
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
                stop = self._refusal(agent.name, target)
                if stop is not None:
                    results[call.id] = _note(
                        call, f"Handoff to {target} was not carried out: {stop[1]}.", "refused"
                    )
                    continue
                handoff = PendingHandoff(
                    source=agent.name, target=target, reason=args["reason"], task=args["task"]
                )
                results[call.id] = _note(call, f"Handed off to {target}.")
            else:
                selected = prepared.tools.get(call.name)
                if selected is not None and selected.approval == "always":
                    waiting.append(call)
                else:
                    to_run.append(call)
        for call, result in zip(to_run, await run_tool_calls(to_run, prepared.tools), strict=True):
            results[call.id] = result
        if stop is not None:
            for call in waiting:
                results[call.id] = _note(call, "Not run: the workflow stopped.", "not_run")
            waiting = []
        answered = [results[call.id] for call in reply.tool_calls if call.id in results]
        batch = [reply, *tag_messages(answered, agent.name)]
        await self._store(batch)
        yield AgentMessage(agent=agent.name, message=reply)
        await notify_invoked(
            agent.context_providers, self.session, prepared.conversation, batch, None
        )
        if stop is None and await self._terminated():
            stop = ("termination_condition", "the termination condition was met")
            unrun = [_note(c, "Not run: the workflow ended.", "not_run") for c in waiting]
            await self._store(tag_messages(unrun, agent.name))
            waiting = []
        if stop is not None:
            async for event in self._finish(*stop):
                yield event
            return
        if waiting:
            pending = tuple(
                PendingRequest(
                    request_id=uuid.uuid4().hex,
                    kind="tool_approval",
                    agent=agent.name,
                    tool_call=call,
                )
                for call in waiting
            )
            await self._checkpoint(status="waiting", pending=pending, pending_handoff=handoff)
            return
        if handoff is not None:
            async for event in self._hand_off(handoff):
                yield event
            return
        if reply.tool_calls:
            await self._checkpoint(tool_rounds=self.cp.tool_rounds + 1)
            return
        async for event in self._turn_ended(agent.name):
            yield event

    async def _hand_off(self, handoff: PendingHandoff) -> AsyncIterator[WorkflowEvent]:
        lines = [f"{handoff.source} handed the conversation over to you ({handoff.target})."]
        if handoff.reason:
            lines.append(f"Reason: {handoff.reason}")
        if handoff.task:
            lines.append(f"Task: {handoff.task}")
        note = ChatMessage.system("\n".join(lines), metadata={HANDOFF_KEY: handoff.model_dump()})
        await self._store([note])
        await self._checkpoint(
            status="running",
            current_agent=handoff.target,
            pending=(),
            pending_handoff=None,
            handoffs=self.cp.handoffs + 1,
            trail=(*self.cp.trail, handoff.target),
            tool_rounds=0,
        )
        yield Handoff(
            source=handoff.source, target=handoff.target, reason=handoff.reason, task=handoff.task
        )
        if await self._terminated():
            async for event in self._finish(
                "termination_condition", "the termination condition was met"
            ):
                yield event

    async def _turn_ended(self, agent: str) -> AsyncIterator[WorkflowEvent]:
        autonomous = self.wf._autonomous.get(agent)
        used = self.cp.autonomous_turns.get(agent, 0)
        if autonomous is not None and used < autonomous[1]:
            prompt = ChatMessage.user(autonomous[0], metadata={AUTONOMOUS_KEY: True})
            await self._store([prompt])
            await self._checkpoint(
                status="running",
                tool_rounds=0,
                autonomous_turns={**self.cp.autonomous_turns, agent: used + 1},
            )
            if await self._terminated():
                async for event in self._finish(
                    "termination_condition", "the termination condition was met"
                ):
                    yield event
            return
        request = PendingRequest(request_id=uuid.uuid4().hex, kind="user_input", agent=agent)
        await self._checkpoint(status="waiting", pending=(request,), tool_rounds=0)
