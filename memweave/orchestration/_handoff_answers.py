"""Answering the requests a paused handoff run waits on: user input and tool approvals.

The functions here are the part of `_handoff_engine.Run` that applies `run(responses=...)`:
checking the answers, storing user input, and running (or refusing) the approved calls,
or forwarding the answers to the nested team whose calls they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._events import Response, TerminateRun, WorkflowEvent
from memweave.orchestration._handoff_plan import Plan, Planner
from memweave.orchestration._runtime import as_input_messages, denied_result
from memweave.orchestration._team import Team
from memweave.orchestration._transcript import AgentView
from memweave.orchestration._views import tag_messages
from memweave.orchestration.checkpoints import ApprovalDecision, PendingRequest
from memweave.orchestration.tools import Tool

if TYPE_CHECKING:
    from memweave.orchestration._handoff_engine import Run
    from memweave.orchestration.agent import Agent

__all__ = ["answer_requests", "check_responses"]


def check_responses(run: Run, responses: Mapping[str, Response]) -> dict[str, Response]:
    """Check `responses` against the pending requests; return them as a dict.

    Raises:
        InvalidArgument: Nothing is pending, an unknown request id, an answered call, or a
            wrong kind of answer.
    """
    if run.cp.status != "waiting":
        raise InvalidArgument(
            "responses",
            responses,
            f"session {run.session_id!r} has no pending requests; use run(message)",
        )
    if not isinstance(responses, Mapping) or not responses:
        raise InvalidArgument("responses", responses, "expected {request_id: answer}")
    pending = {p.request_id: p for p in run.cp.pending}
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


async def answer_requests(
    run: Run, responses: Mapping[str, Response]
) -> AsyncIterator[WorkflowEvent]:
    """Apply answers to pending requests and yield the events of what follows."""
    answers = check_responses(run, responses)
    user = next((p for p in run.cp.pending if p.kind == "user_input"), None)
    if user is not None:
        answer = answers[user.request_id]
        if isinstance(answer, TerminateRun):
            plan = Plan()
            plan.finish("user_terminated", "the user ended the run")
            await run._apply(plan)
            for event in await run._events(plan):
                yield event
            return
        inputs = as_input_messages(answer)  # type: ignore[arg-type]
        async for event in run._user_input(inputs):
            yield event
        return
    decided: list[PendingRequest] = []
    for request in run.cp.pending:
        given = answers.get(request.request_id)
        if isinstance(given, bool):
            given = ApprovalDecision(approved=given)
        if isinstance(given, ApprovalDecision):
            request = request.model_copy(update={"decision": given})
        decided.append(request)
    if any(request.decision is None for request in decided):
        await run._checkpoint(pending=tuple(decided))
        return
    async for event in _run_approved(run, decided):
        yield event


async def _tools_for(
    run: Run, agent: Agent, calls: Sequence[ToolCall]
) -> dict[str, Tool[..., Any]]:
    """The tools that can run `calls`: the agent's own and, when a call needs one, those
    its context providers offer now (resolved as `Agent._prepare` resolves them)."""
    own = {t.name: t for t in agent.tools}
    if all(call.name in own for call in calls):
        return own
    window = await run.conversation.window(agent.reducer, AgentView(agent.name, "assistant"))
    return (await agent._prepare(run.session, window, reduced=True)).tools


async def _run_approved(run: Run, decided: list[PendingRequest]) -> AsyncIterator[WorkflowEvent]:
    teams = {r.agent for r in decided if isinstance(run.wf.agents.get(r.agent), Team)}
    if teams:
        # A nested team's calls: the team runs them (or not) in its own sub-session.
        from memweave.orchestration._team_step import team_step

        team = run.wf.agents[next(iter(teams))]
        assert isinstance(team, Team)
        answers: dict[str, Response] = {
            r.request_id: r.decision for r in decided if r.decision is not None
        }
        async for event in team_step(run, team, answers=answers):
            yield event
        return
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
        agent = run.wf.agents[agent_name]
        assert not isinstance(agent, Team)
        tools = await _tools_for(run, agent, calls)
        ran = await run._run_calls(agent, calls, tools)
        for call, result in zip(calls, ran, strict=True):
            results[call.id] = tag_messages([result], agent_name)[0]
    plan = await Planner(run.wf, run.cp).approved(run.conversation.messages, decided, results)
    await run._apply(plan)
    for event in await run._events(plan):
        yield event
