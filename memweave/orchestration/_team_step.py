"""A nested team's step in a handoff run: its task, its turn, and the answer or pause it leads to.

The team's turn is keyed by the id of the checkpoint the step starts from, so a step that
failed (or whose process died) and is run again goes on with the team's stored turn instead
of giving the team its task twice; a team's answer that was stored but not checkpointed is
completed by the engine's recovery like any agent's reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from memweave.messages import ChatMessage
from memweave.orchestration._events import Response, WorkflowEvent
from memweave.orchestration._handoff_plan import AUTONOMOUS_KEY, Plan, Planner
from memweave.orchestration._team import Team, TeamOutcome
from memweave.orchestration._views import HANDOFF_KEY
from memweave.orchestration.checkpoints import PendingRequest

if TYPE_CHECKING:
    from memweave.orchestration._handoff_engine import Run

__all__ = ["team_step"]


def _is_real_user(message: ChatMessage) -> bool:
    return message.role == "user" and not message.metadata.get(AUTONOMOUS_KEY)


def _note_to(message: ChatMessage, team: str) -> dict[str, object] | None:
    note = message.metadata.get(HANDOFF_KEY)
    if message.role == "system" and isinstance(note, dict) and note.get("target") == team:
        return dict(note)
    return None


async def _task(run: Run, team: Team) -> str:
    """The team's task: the `task` of the newest handoff to it since the user's newest
    message, or else that message's text."""
    await run.conversation.ensure(lambda held: any(map(_is_real_user, held)))
    note: dict[str, object] | None = None
    for message in reversed(run.conversation.messages):
        if _is_real_user(message):
            task = note.get("task") if note is not None else None
            return task if isinstance(task, str) and task.strip() else message.text
        if note is None:
            note = _note_to(message, team.name)
    task = note.get("task") if note is not None else None
    return task if isinstance(task, str) else ""


async def team_step(
    run: Run, team: Team, *, answers: Mapping[str, Response] | None = None
) -> AsyncIterator[WorkflowEvent]:
    """Run the team's turn (or forward `answers` to its pending approvals) and plan what
    follows: its answer as the team's reply, or a pause on its approvals."""
    task = "" if answers is not None else await _task(run, team)
    outcome: TeamOutcome | None = None
    async for item in team.play(
        run.session_id, task, run.cp.id, answers=answers, stream=run.stream
    ):
        if isinstance(item, TeamOutcome):
            outcome = item
        else:
            yield item
    assert outcome is not None
    if outcome.requests:
        pending = tuple(
            PendingRequest(
                request_id=request.request_id,
                kind="tool_approval",
                agent=team.name,
                tool_call=request.tool_call,
            )
            for request in outcome.requests
        )
        plan = Plan(changes={"status": "waiting", "pending": pending, "pending_handoff": None})
        await run._apply(plan)
        return
    reply = team.answer_message(outcome)
    plan = await Planner(run.wf, run.cp).step(team.name, run.conversation.messages, reply, {})
    await run._apply(plan)
    for event in await run._events(plan):
        yield event
