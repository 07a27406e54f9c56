"""`Team`: a workflow (handoff or `Sequential`) taking part in another workflow as one member.

A team works in a sub-session of its own, linked to the conversation it takes part in:
`<parent session id>/<team name>` (a digest when that would be too long), stored in the
team workflow's own history provider. Each time the team has a turn, it receives one user
message (its task) in that sub-session, its agents work there as usual (checkpointed, when
the team is a handoff workflow, under the team workflow's name), and the team's answer, the
text of the last agent message of the turn, is stored in the parent conversation as one
assistant message by the team, whose metadata links the sub-session (`SUB_SESSION_KEY`, as
for an agent called as a tool). So each message is stored once: the team's inner turns in
the sub-session, and only its answer in the parent conversation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memweave.errors import ConfigurationError, InvalidArgument
from memweave.llm import Usage
from memweave.messages import ChatMessage
from memweave.orchestration._agent_tool import SUB_SESSION_KEY
from memweave.orchestration._events import (
    AgentMessage,
    Handoff,
    Response,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.orchestration._runtime import TurnResult
from memweave.orchestration._transcript import Transcript
from memweave.orchestration._views import agent_of, tag_messages
from memweave.session import MAX_SESSION_ID_LENGTH, Session

if TYPE_CHECKING:
    from memweave.context.base import ContextProvider
    from memweave.orchestration.handoff import HandoffWorkflow
    from memweave.orchestration.sequential import Sequential
    from memweave.orchestration.tools import Tool
    from memweave.providers.base import ChatHistoryProvider

__all__ = ["SUB_SESSION_KEY", "TEAM_INPUT_KEY", "Team", "TeamOutcome"]

TEAM_INPUT_KEY = "memweave.team_input"
"""Metadata key on the task a team receives in its sub-session: `{"session_id", "step"}`,
the parent session and the parent's step, which tells a retried turn that its task was
given already."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,53}$")


@dataclass
class TeamOutcome:
    """How a team's turn ended: with an answer, or paused on tool approvals."""

    session_id: str
    """The team's sub-session."""
    answer: str | None = None
    """The team's answer (None when paused)."""
    requests: list[ToolApprovalRequest] = field(default_factory=list)
    """The approvals the team waits for (when paused)."""
    usage: Usage = field(default_factory=Usage)
    """Tokens its agents used, where the team workflow reports them (`Sequential`)."""


class Team:
    """A workflow taking part in another one under a name, like an agent: a nested team.

    A `HandoffWorkflow` or a `Sequential` becomes a participant of a handoff workflow (a
    supervisor's worker, say, for hierarchical teams) or a step of a `Sequential`. The team
    receives a task as one user message and answers with the text of its last agent
    message. Its own messages are stored in a sub-session linked to the parent's (see the
    module docs and `session_for`); the parent conversation stores only the answer.

    In a handoff workflow, a team's task is the `task` of the handoff to it (or, without
    one, the user's newest message); the team's turn runs its workflow until that pauses
    for user input or ends, and a tool approval inside the team pauses the parent run (the
    request is yielded under the team's name, and answered as any other). Its agents'
    `AgentMessage` and `Handoff` events are yielded by the parent, with the team's name in
    `team`. In a `Sequential`, a team's task is the previous step's answer (or the input),
    and a team that stops for a tool approval raises `ConfigurationError`.

    Args:
        workflow: The `HandoffWorkflow` or `Sequential` to wrap.
        name: The participant name (1-53 letters, digits, `_` or `-`).
        description: What the team does, for the agents that hand off to it.

    Raises:
        InvalidArgument: A bad name or description, or `workflow` is neither kind.

    Example:
        ```python
        research = Team(research_workflow, name="research", description="Finds sources.")
        top = HandoffBuilder("top", [boss, research, writer]).with_supervisor(boss).build()
        ```
    """

    def __init__(
        self, workflow: HandoffWorkflow | Sequential, *, name: str, description: str = ""
    ) -> None:
        from memweave.orchestration.handoff import HandoffWorkflow
        from memweave.orchestration.sequential import Sequential

        if not isinstance(workflow, HandoffWorkflow | Sequential):
            raise InvalidArgument("workflow", workflow, "expected a HandoffWorkflow or Sequential")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument("name", name, "a team name is 1-53 letters, digits, '_' or '-'")
        if not isinstance(description, str):
            raise InvalidArgument("description", description, "must be a str")
        self._workflow = workflow
        self._name = name
        self._description = description

    @property
    def name(self) -> str:
        """The team's name as a participant."""
        return self._name

    @property
    def description(self) -> str:
        """What the team does, as other agents read it."""
        return self._description

    @property
    def workflow(self) -> HandoffWorkflow | Sequential:
        """The wrapped workflow."""
        return self._workflow

    @property
    def history(self) -> ChatHistoryProvider:
        """Where the team's sub-sessions are stored (its workflow's history)."""
        return self._workflow.history

    # Orchestrators read these as they read an agent's.
    tools: tuple[Tool[..., Any], ...] = ()
    """A team is offered no tools (so it cannot hand off; it answers)."""
    context_providers: tuple[ContextProvider, ...] = ()
    """A team's context comes from its own agents' providers."""
    reducer = None
    """A team reads the newest message it is shown; its agents reduce their own windows."""

    def session_for(self, parent_session_id: str) -> str:
        """The id of the team's sub-session under a parent session:
        `<parent>/<team name>`, or a digest-based id when that would be too long."""
        plain = f"{parent_session_id}/{self._name}"
        if len(plain) <= MAX_SESSION_ID_LENGTH:
            return plain
        digest = hashlib.blake2b(parent_session_id.encode(), digest_size=16).hexdigest()
        return f"{parent_session_id[:100]}#{digest}/{self._name}"

    def __repr__(self) -> str:
        return f"Team(name={self._name!r}, workflow={self._workflow!r})"

    # -- one turn -------------------------------------------------------------------------------

    async def play(
        self,
        parent_session_id: str,
        task: str,
        step: str,
        *,
        answers: Mapping[str, Response] | None = None,
        stream: bool = False,
    ) -> AsyncIterator[WorkflowEvent | TeamOutcome]:
        """Run one turn of the team and yield its agents' events, then a `TeamOutcome`.

        `step` identifies the turn: when the sub-session's newest task carries it, the task
        was given already (a retried turn), and the team goes on from where it stopped
        instead of receiving it twice. `answers` forwards answers to the team's pending tool
        approvals.
        """
        from memweave.orchestration.sequential import Sequential

        sub = self.session_for(parent_session_id)
        if isinstance(self._workflow, Sequential):
            async for item in self._play_sequential(self._workflow, parent_session_id, task, step):
                yield item
            return
        workflow = self._workflow
        given = await self._newest_task_step(sub) == step
        pending = await workflow.pending_requests(session=sub)
        approvals = [r for r in pending if isinstance(r, ToolApprovalRequest)]
        if answers is not None:
            open_ids = {r.request_id for r in approvals}
            chosen = {key: value for key, value in answers.items() if key in open_ids}
            if chosen:
                events = workflow.run(responses=chosen, session=sub, stream=stream)
            else:
                events = workflow.run(session=sub, stream=stream)
        elif given:
            events = workflow.run(session=sub, stream=stream)
        elif approvals:
            yield TeamOutcome(session_id=sub, requests=approvals)
            return
        else:
            message = ChatMessage.user(
                task, metadata={TEAM_INPUT_KEY: {"session_id": parent_session_id, "step": step}}
            )
            asking = [r for r in pending if isinstance(r, UserInputRequest)]
            if asking:
                answer: dict[str, Response] = {asking[0].request_id: [message]}
                events = workflow.run(responses=answer, session=sub, stream=stream)
            else:
                events = workflow.run(message, session=sub, stream=stream)
        requests: list[ToolApprovalRequest] = []
        async for event in events:
            if isinstance(event, ToolApprovalRequest):
                requests.append(event)
            elif isinstance(event, AgentMessage | Handoff):
                yield event.model_copy(update={"team": (self._name, *event.team)})
            elif not isinstance(event, UserInputRequest | WorkflowOutput):
                yield event
        if requests:
            yield TeamOutcome(session_id=sub, requests=requests)
            return
        yield TeamOutcome(session_id=sub, answer=await self._answer_after_task(sub))

    async def _play_sequential(
        self, workflow: Sequential, parent_session_id: str, task: str, step: str
    ) -> AsyncIterator[AgentMessage | TeamOutcome]:
        sub = self.session_for(parent_session_id)
        transcript = Transcript(workflow.history, sub)
        await transcript.ensure(lambda held: any(TEAM_INPUT_KEY in m.metadata for m in held))
        held = transcript.messages
        last = workflow.agents[-1].name
        for index in range(len(held) - 1, -1, -1):
            found = held[index].metadata.get(TEAM_INPUT_KEY)
            if found is None:
                continue
            done = held[-1]
            if (
                isinstance(found, dict)
                and found.get("step") == step
                and done.role == "assistant"
                and not done.tool_calls
                and agent_of(done) == last
            ):
                # A retried turn whose pipeline finished: its answer is stored already.
                yield TeamOutcome(session_id=sub, answer=done.text)
                return
            break
        message = ChatMessage.user(
            task, metadata={TEAM_INPUT_KEY: {"session_id": parent_session_id, "step": step}}
        )
        response = await workflow.run(message, session=sub)
        for produced in response.messages:
            author = agent_of(produced)
            if produced.role == "assistant" and author is not None:
                yield AgentMessage(agent=author, message=produced, team=(self._name,))
        yield TeamOutcome(session_id=sub, answer=response.text, usage=response.usage)

    async def _newest_task_step(self, sub: str) -> object:
        transcript = Transcript(self.history, sub)
        await transcript.ensure(lambda held: any(TEAM_INPUT_KEY in m.metadata for m in held))
        for message in reversed(transcript.messages):
            found = message.metadata.get(TEAM_INPUT_KEY)
            if found is not None:
                return found.get("step") if isinstance(found, dict) else None
        return None

    async def _answer_after_task(self, sub: str) -> str:
        """The text of the last agent message after the newest task (empty when none)."""
        transcript = Transcript(self.history, sub)
        await transcript.ensure(lambda held: any(TEAM_INPUT_KEY in m.metadata for m in held))
        for message in reversed(transcript.messages):
            if TEAM_INPUT_KEY in message.metadata:
                break
            if message.role == "assistant" and message.text.strip():
                return message.text
        return ""

    def answer_message(self, outcome: TeamOutcome) -> ChatMessage:
        """The team's answer as stored in the parent conversation, linked to its sub-session."""
        link = {SUB_SESSION_KEY: outcome.session_id}
        reply = ChatMessage.assistant(outcome.answer or "", metadata=link)
        return tag_messages([reply], self._name)[0]

    # -- as a step of a `Sequential` (the hooks `Sequential.run` calls on an agent) ------------

    async def _respond(
        self,
        session: Session,
        history: Sequence[ChatMessage],
        new: Sequence[ChatMessage] = (),
        *,
        approve: Any = None,
        progress: list[ChatMessage] | None = None,
        reduced: bool = False,
    ) -> TurnResult:
        """Run the team on the text of the newest message it is shown (its task).

        Raises:
            ConfigurationError: The team stopped for a tool approval, which a step of a
                `Sequential` cannot ask for (the request stays pending in its sub-session).
        """
        seen = [*history, *new]
        task = seen[-1].text if seen else ""
        step = seen[-1].id if seen else "start"
        outcome: TeamOutcome | None = None
        async for item in self.play(session.id, task, step):
            if isinstance(item, TeamOutcome):
                outcome = item
        if outcome is None or outcome.answer is None:
            sub = outcome.session_id if outcome is not None else self.session_for(session.id)
            raise ConfigurationError(
                f"team {self._name!r} stopped for a tool approval, which a step of a "
                f"Sequential cannot ask for; the request stays pending in session {sub!r}"
            )
        answer = self.answer_message(outcome)
        if progress is not None:
            progress.append(answer)
        return TurnResult(messages=[answer], usage=outcome.usage, request=seen)
