"""The route tables of a handoff workflow: `handoff_to_<name>` and `end_run` tools per agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from memweave.orchestration._state import END, StateSpec
from memweave.orchestration._team import Team
from memweave.orchestration.tools import Tool

if TYPE_CHECKING:
    from memweave.orchestration.agent import Agent

__all__ = ["END_TOOL", "HANDOFF_TOOL_PREFIX", "route_tables"]

HANDOFF_TOOL_PREFIX = "handoff_to_"
"""Handoff tools are named `handoff_to_<agent name>`; no other tool may use the prefix."""

END_TOOL = "end_run"
"""The tool an agent with a route to `END` calls to end the run; reserved for that use."""


def _handoff_tool(target: str, description: str, state: StateSpec | None) -> Tool[..., Any]:
    async def handoff(
        reason: Annotated[str, "Why you hand the conversation over, in one sentence."] = "",
        task: Annotated[str, "What should be done next."] = "",
        update: dict[str, Any] | None = None,
    ) -> str:
        """Hand the conversation over (the workflow intercepts the call)."""
        return f"Handed off to {target}."

    made = Tool(handoff, name=f"{HANDOFF_TOOL_PREFIX}{target}", description=description)
    properties = made.parameters["properties"]
    if state is None:
        # The parameter exists for the signature only; without a state it is not offered.
        del properties["update"]
    else:
        schema = state.update_schema()
        defs = schema.pop("$defs", None)
        properties["update"] = schema
        if defs:
            made.parameters["$defs"] = defs
    return made


def _end_tool(description: str) -> Tool[..., Any]:
    async def end_run(
        answer: Annotated[
            str, "Your final answer, when you did not write it as your message's text."
        ] = "",
    ) -> str:
        """End the run (the workflow intercepts the call)."""
        return "Run ended."

    return Tool(end_run, name=END_TOOL, description=description)


def route_tables(
    agents: Mapping[str, Agent | Team],
    routes: Mapping[str, Mapping[str, str | None]] | None,
    state: StateSpec | None,
) -> tuple[dict[str, dict[str, Tool[..., Any]]], dict[str, dict[str, str]]]:
    """Build each participant's route tools (by tool name) and their targets (tool name to
    participant name or `END`); `routes=None` means everyone may hand off to everyone."""
    tables: dict[str, dict[str, Tool[..., Any]]] = {}
    targets_by_tool: dict[str, dict[str, str]] = {}
    for source, participant in agents.items():
        targets: Mapping[str, str | None]
        if isinstance(participant, Team):
            targets = {}
        elif routes is None:
            targets = {name: None for name in agents if name != source}
        else:
            targets = routes.get(source, {})
        tools: dict[str, Tool[..., Any]] = {}
        names: dict[str, str] = {}
        for target, description in targets.items():
            if target == END:
                made = _end_tool(description or "End the run: your answer is the final one.")
            elif target == source:
                text = description or "Take another turn yourself, with a new task."
                made = _handoff_tool(target, text, state)
            else:
                text = (
                    description
                    or agents[target].description
                    or f"Hand the conversation over to {target}."
                )
                made = _handoff_tool(target, text, state)
            tools[made.name] = made
            names[made.name] = target
        tables[source] = tools
        targets_by_tool[source] = names
    return tables, targets_by_tool
