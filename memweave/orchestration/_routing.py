"""Deciding the routes one message asks for: handoffs, a supervisor's delegations, self-routes,
`END`, and the `Command`s tools return.

The calls of a message are read in call order. The first route is carried out; a route to
`END` ends the run. Later routes of the same message are carried out only as a supervisor's
fan-out (every route of the message delegates to one of its workers): they wait in the
checkpoint's queue, and each worker takes over when the one before it answers. Any other
later route is answered with a tool error saying it was not carried out. A refusal of the
ping-pong guard or of the handoff limit ends the run (for a first route) or is a tool error
(for a queued delegation).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._events import StopReason
from memweave.orchestration._state import END, StateUpdateInvalid
from memweave.orchestration._views import HANDOFF_KEY, agent_of
from memweave.orchestration.checkpoints import Checkpoint, PendingHandoff

if TYPE_CHECKING:
    from memweave.orchestration.handoff import HandoffWorkflow

__all__ = ["NOT_RUN", "Decision", "Route", "RouteDecider", "handed_over_or_wrote"]

NOT_RUN = "not_run"
"""`TOOL_ERROR_KEY` of the result the workflow writes for a call it did not carry out."""


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


def handed_over_or_wrote(conversation: Sequence[ChatMessage], agent: str) -> bool:
    """Whether `conversation` holds a handoff to `agent` or text by it: the newest part of a
    conversation that does tells the guard what the whole one would."""
    return _since_handoff(conversation, agent) is not None


def progress_key(task: str, text: str, update: object, state: dict[str, JsonValue] | None) -> str:
    """What a delegation gives its target, as a digest: one that repeats an earlier one's
    digest (since the last user message) makes no progress."""
    raw = json.dumps(
        [task.strip(), text.strip(), update, state], sort_keys=True, default=str
    ).encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@dataclass
class Route:
    """One route a message asks for."""

    call: ToolCall
    """The handoff, `end_run` or tool call that asks for it."""
    target: str
    """A participant name or `END`."""
    reason: str = ""
    """Why (handoff calls)."""
    task: str = ""
    """What the target should do (handoff calls)."""
    update: dict[str, Any] | None = None
    """The handoff's state update, not applied yet (handoff calls)."""
    answer: str = ""
    """The final answer passed to `end_run`."""
    from_tool: bool = False
    """Asked for by a tool's `Command` (whose update was applied already)."""


@dataclass
class Decision:
    """What the routes of one message decided so far."""

    state: dict[str, JsonValue] | None
    """The shared state after the accepted updates."""
    handoffs: int
    """Handoffs since the last user message, the accepted ones included."""
    delegations: dict[str, tuple[str, ...]]
    """Progress keys given per target since the last user message."""
    handoff: PendingHandoff | None = None
    """The route carried out."""
    queue: list[PendingHandoff] = field(default_factory=list)
    """Delegations of a fan-out, after the first."""
    stop: tuple[StopReason, str] | None = None
    """Why the run stops, when a route ended it or was refused."""
    answer: str = ""
    """The answer passed to `end_run`."""
    given_now: set[tuple[str, str]] = field(default_factory=set)
    """(target, progress key) pairs given by this message."""


class RouteDecider:
    """Decides the routes of one agent's message, from the checkpoint taken before it."""

    def __init__(
        self,
        workflow: HandoffWorkflow,
        checkpoint: Checkpoint,
        agent: str,
        before: Sequence[ChatMessage],
        text: str,
    ) -> None:
        self.wf = workflow
        self.cp = checkpoint
        self.agent = agent
        self.before = before
        self.text = text

    def start(
        self, state: dict[str, JsonValue] | None, handoff: PendingHandoff | None = None
    ) -> Decision:
        """A decision with nothing decided yet (or `handoff` decided earlier)."""
        return Decision(
            state=state,
            handoffs=self.cp.handoffs,
            delegations=dict(self.cp.delegations),
            handoff=handoff,
        )

    def _allowed(self) -> list[str]:
        allowed = list(self.wf._targets.get(self.agent, {}).values())
        boss = self.wf._returns.get(self.agent)
        if boss is not None and boss not in allowed:
            allowed.append(boss)
        return allowed

    def _tracked(self, target: str) -> bool:
        """Whether the progress rule guards this route: a self-route or a delegation."""
        return target == self.agent or self.wf._returns.get(target) == self.agent

    def decide(self, route: Route, d: Decision) -> tuple[str, str | None]:
        """Decide one route; return the text its call's result gets and, when the route was
        not carried out, the `TOOL_ERROR_KEY` kind."""
        target = route.target
        what = "ended the run" if target == END else f"handed off to {target}"
        if d.stop is not None:
            return f"Not {what}: the run stopped at an earlier call of this message.", NOT_RUN
        if route.from_tool and target not in self._allowed():
            allowed = ", ".join(self._allowed()) or "nowhere"
            return (
                f"(Its route to {target} was not followed: {self.agent} may route to {allowed}.)",
                "refused",
            )
        if target == END:
            if d.handoff is not None:
                return (
                    f"Not ended: this message handed the conversation to {d.handoff.target}.",
                    NOT_RUN,
                )
            d.stop = ("ended", f"{self.agent} ended the run")
            d.answer = route.answer
            return "Run ended.", None
        state = d.state
        if route.update is not None and not route.from_tool:
            spec = self.wf._state
            try:
                if spec is None:
                    raise StateUpdateInvalid(route.update, ["this workflow has no shared state"])
                state = spec.apply(d.state or {}, route.update)
            except StateUpdateInvalid as exc:
                return (
                    f"Error: not handed off to {target}: the state update is invalid: "
                    f"{'; '.join(exc.problems)}. Call the handoff again with a valid update.",
                    "invalid_arguments",
                )
        key = (
            progress_key(route.task, self.text, route.update, d.state)
            if self._tracked(target)
            else None
        )
        made = PendingHandoff(
            source=self.agent,
            target=target,
            reason=route.reason,
            task=route.task,
            update=route.update if not route.from_tool else None,
        )
        if d.handoff is None:
            refused = self._refusal(target, key, d)
            if refused is not None:
                d.stop = refused
                return f"Handoff to {target} was not carried out: {refused[1]}.", "refused"
            d.handoff = made
            done = f"Handed off to {target}."
        else:
            first = d.handoff.target
            if not (self.wf._returns.get(target) == self.agent == self.wf._returns.get(first)):
                return (
                    f"Not handed off to {target}: a message hands the conversation to one "
                    f"agent, and this one went to {first}. Hand off again later if it is "
                    "still needed.",
                    NOT_RUN,
                )
            limit = self.wf._max_handoffs
            if limit is not None and d.handoffs >= limit:
                return (
                    f"Not handed off to {target}: the limit of {limit} handoffs per user "
                    "message was reached.",
                    "refused",
                )
            if key is not None and (target, key) in d.given_now:
                return (
                    f"Not handed off to {target}: this message gave it the same task already.",
                    "refused",
                )
            if self.wf._ping_pong and key is not None and key in d.delegations.get(target, ()):
                return (
                    f"Not handed off to {target}: it was given this same task already since "
                    "the user's last message.",
                    "refused",
                )
            previous = d.queue[-1] if d.queue else d.handoff
            d.queue.append(made)
            done = f"Handed off to {target}, after {previous.target}."
        d.handoffs += 1
        d.state = state
        if key is not None:
            d.delegations[target] = (*d.delegations.get(target, ()), key)
            d.given_now.add((target, key))
        return done, None

    def _refusal(self, target: str, key: str | None, d: Decision) -> tuple[StopReason, str] | None:
        limit = self.wf._max_handoffs
        source = self.agent
        if limit is not None and d.handoffs >= limit:
            return "max_handoffs", f"the limit of {limit} handoffs per user message was reached"
        if not self.wf._ping_pong:
            return None
        if key is not None:
            if key in d.delegations.get(target, ()):
                who = "itself" if target == source else target
                return (
                    "ping_pong",
                    f"{source} would give {who} the same task again, with nothing changed "
                    "since it last did (no progress)",
                )
            return None
        trail = self.cp.trail
        if len(trail) < 2 or trail[-2:] != (target, source):
            return None
        # A hand-back is fine when the agent said why (a wrongly routed question goes back to
        # triage, which routes it again); bouncing between the same two agents again is not.
        if len(trail) >= 3 and trail[-3] == source:
            return (
                "ping_pong",
                f"{source} would hand the conversation to {target} again after {target} "
                f"handed it back ({source} -> {target} -> {source} -> {target})",
            )
        if not self.text.strip() and not _since_handoff(self.before, source):
            return (
                "ping_pong",
                f"{source} would hand the conversation straight back to {target}, which just "
                f"handed it over, without writing anything ({target} -> {source} -> {target})",
            )
        return None
