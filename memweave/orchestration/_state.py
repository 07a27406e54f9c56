"""A workflow's typed shared state, and how tools read, update and route with it.

`HandoffBuilder.with_state(schema)` gives a workflow one state per session: an instance of
a pydantic model, or a JSON dict. It is kept as JSON in every checkpoint, so it is restored
with the run in another process. It changes in three ways, each checked against the schema
before it is kept:

- a handoff's `update` argument (a structured payload the model writes);
- a tool parameter annotated `Annotated[MyState, InjectedState]`: the tool receives a copy
  of the state (the parameter is left out of the tool's JSON schema, so the model never sees
  it), and what it changes on that copy is kept when it returns;
- a tool returning `Command(update=..., goto=...)`, which may also route the conversation.

An update that breaks the schema is not kept: it goes back to the model as a tool error and
the run goes on. Updates of one message are applied in call order, tools' before handoffs'.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter, ValidationError, field_validator

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage, ToolCall

__all__ = [
    "COMMAND_KEY",
    "END",
    "Command",
    "InjectedState",
    "StateSpec",
    "StateUpdateInvalid",
    "ToolBatch",
    "command_of",
    "command_text",
    "current_batch",
    "running",
]

END = "__end__"
"""The route target that ends the run (LangGraph's `END`): `add_handoff(agent, END)` gives
the agent an `end_run` tool, and a tool may return `Command(goto=END)`."""

COMMAND_KEY = "memweave.command"
"""Metadata key on a tool result whose tool routed or updated the state:
`{"goto": <target or None>, "update": <JSON object or None>}`."""

_TOOL_ERROR_KEY = "memweave.tool_error"  # `tools.TOOL_ERROR_KEY`; tools imports this module

_JSON_OBJECT: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])


class InjectedState:
    """Marks a tool parameter that receives the workflow's shared state.

    Annotate the parameter `Annotated[MyState, InjectedState]` (or `Annotated[dict,
    InjectedState]` for a JSON-dict state). It is left out of the tool's JSON schema, so the
    model never sees or fills it; the workflow passes a copy of the current state. Changes
    made to that copy are kept when the tool returns (checked against the schema), as is a
    `Command(update=...)` the tool returns. Calls of one message that take the state run
    one after another, in call order, each seeing what the earlier ones changed (other calls
    run concurrently); their updates are kept in call order.

    Outside a workflow with shared state such a tool cannot run: its call gets an error
    result saying so.

    Example:
        ```python
        @tool
        def add_item(item: str, state: Annotated[Cart, InjectedState]) -> str:
            \"\"\"Add an item to the cart.\"\"\"
            state.items.append(item)
            return f"{len(state.items)} items"
        ```
    """


class Command(BaseModel):
    """What a tool returns to update the shared state and/or route the conversation.

    `goto` names the participant to hand the conversation to (one the calling agent may
    route to, itself where self-routing is allowed, its supervisor, or `END` where the agent
    may end the run). `update` is merged into the shared state (checked against its schema).
    `result` is the tool result the model reads. Outside a workflow only `result` matters.

    Example:
        ```python
        @tool
        def escalate(reason: str) -> Command:
            \"\"\"Send the case to a human-facing agent.\"\"\"
            return Command(goto="escalations", update={"priority": "high"}, result="Escalated.")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    goto: str | None = None
    """The participant to hand the conversation to, `END`, or None to stay."""
    update: dict[str, JsonValue] | None = None
    """Fields of the shared state to set (a dict, or a pydantic model's set fields)."""
    result: str | None = None
    """The tool result the model reads; a short sentence saying what happened when None."""

    def __init__(
        self,
        goto: str | None = None,
        update: Mapping[str, Any] | BaseModel | None = None,
        result: str | None = None,
    ) -> None:
        try:
            super().__init__(goto=goto, update=update, result=result)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in error["loc"]) or "Command"
            raise InvalidArgument(where, error.get("input"), error["msg"]) from None

    @field_validator("update", mode="before")
    @classmethod
    def _model_to_dict(cls, value: object) -> object:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return value


def command_text(command: Command) -> str:
    """The tool result text of a `Command`."""
    if command.result is not None:
        return command.result
    if command.goto is not None:
        return f"Routing to {command.goto}."
    return "State updated." if command.update else "Done."


def command_of(message: ChatMessage) -> tuple[str | None, dict[str, JsonValue] | None] | None:
    """The route and state update stored on a tool result, or None when it has neither."""
    found = message.metadata.get(COMMAND_KEY)
    if not isinstance(found, dict):
        return None
    goto = found.get("goto")
    update = found.get("update")
    return (
        goto if isinstance(goto, str) else None,
        update if isinstance(update, dict) else None,
    )


class StateUpdateInvalid(InvalidArgument):
    """A state update breaks the state's schema (internal: it becomes a tool error).

    Attributes:
        problems: One line per problem.
    """

    def __init__(self, update: object, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("update", update, "; ".join(self.problems))


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "state"
        out.append(f"{where}: {error['msg']}")
    return out


class StateSpec:
    """The schema of a workflow's shared state: a pydantic model class, or a JSON dict
    (whose value is the initial state; any JSON object update is accepted).

    Args:
        schema: The model class, or the initial JSON dict.
        initial: The initial state for a model class (an instance or a dict); by default the
            model built from its field defaults.

    Raises:
        InvalidArgument: `schema` is neither, or the initial state is not valid.
    """

    def __init__(self, schema: object, initial: object = None) -> None:
        self.model: type[BaseModel] | None = None
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            self.model = schema
            start: object = {} if initial is None else initial
            if isinstance(start, BaseModel):
                start = start.model_dump(mode="json", by_alias=True)
            if not isinstance(start, Mapping):
                raise InvalidArgument("initial", initial, "expected a model instance or a dict")
            try:
                self._initial = self.apply({}, start)
            except StateUpdateInvalid as exc:
                raise InvalidArgument(
                    "initial",
                    initial,
                    f"not a valid {schema.__name__} ({'; '.join(exc.problems)}); give every "
                    "field a default or pass initial=",
                ) from None
        elif isinstance(schema, Mapping):
            if initial is not None:
                raise InvalidArgument("initial", initial, "a dict state is its own initial value")
            try:
                self._initial = _JSON_OBJECT.validate_python(dict(schema))
            except ValidationError as exc:
                raise InvalidArgument("state", schema, "; ".join(_problems(exc))) from None
        else:
            raise InvalidArgument("state", schema, "expected a pydantic model class or a JSON dict")

    @property
    def name(self) -> str:
        """The schema's name, for messages."""
        return self.model.__name__ if self.model is not None else "dict"

    def initial(self) -> dict[str, JsonValue]:
        """A fresh copy of the initial state, as JSON."""
        return copy.deepcopy(self._initial)

    def apply(
        self, current: Mapping[str, JsonValue], update: Mapping[str, Any]
    ) -> dict[str, JsonValue]:
        """Return `current` with `update`'s fields set, as JSON, after checking the result.

        Raises:
            StateUpdateInvalid: An unknown field (model schema), a value the model refuses,
                or a value that is not JSON.
        """
        if not isinstance(update, Mapping):
            raise StateUpdateInvalid(
                update, [f"expected a JSON object, got {type(update).__name__}"]
            )
        if self.model is None:
            try:
                checked = _JSON_OBJECT.validate_python(dict(update))
            except ValidationError as exc:
                raise StateUpdateInvalid(update, _problems(exc)) from None
            return {**copy.deepcopy(dict(current)), **checked}
        known = {info.alias or name for name, info in self.model.model_fields.items()}
        unknown = sorted(str(key) for key in update if key not in known)
        if unknown:
            raise StateUpdateInvalid(
                update,
                [f"{key}: unknown field of {self.model.__name__}" for key in unknown],
            )
        try:
            made = self.model.model_validate({**dict(current), **dict(update)})
        except ValidationError as exc:
            raise StateUpdateInvalid(update, _problems(exc)) from None
        return made.model_dump(mode="json", by_alias=True)

    def load(self, current: Mapping[str, JsonValue]) -> Any:
        """The state as tools and callers see it: a model instance, or a dict (a copy)."""
        if self.model is None:
            return copy.deepcopy(dict(current))
        return self.model.model_validate(dict(current))

    def changes(self, current: Mapping[str, JsonValue], seen: object) -> dict[str, Any]:
        """The fields a tool changed on `seen`, its copy of `current` (none if it replaced
        the object); removed dict keys are not changes."""
        if self.model is not None and isinstance(seen, self.model):
            after: Mapping[str, Any] = seen.model_dump(mode="json", by_alias=True)
        elif self.model is None and isinstance(seen, dict):
            after = seen
        else:
            return {}
        return {key: value for key, value in after.items() if current.get(key) != value}

    def update_schema(self) -> dict[str, Any]:
        """The JSON schema of an update: the schema's fields, none required."""
        if self.model is None:
            return {
                "type": "object",
                "description": "Fields of the shared state to set (a JSON object).",
            }
        schema = self.model.model_json_schema(by_alias=True)
        partial: dict[str, Any] = {
            "type": "object",
            "properties": schema.get("properties", {}),
            "additionalProperties": False,
            "description": f"Fields of the shared state ({self.model.__name__}) to set.",
        }
        if "$defs" in schema:
            partial["$defs"] = schema["$defs"]
        return partial


class ToolBatch:
    """The tool calls a workflow step runs: the state each call is given, and what each
    returned. Current (see `current_batch`) while the step's calls run.

    Calls of tools that take the state (`InjectedState`) run one after another, in call
    order, each on a copy of the state with the changes of the earlier ones; the other calls
    run concurrently with them. Updates are checked, and recorded on the results, in call
    order (`finish`).

    Args:
        calls: The calls of the step; only these get the state.
        tools: The tools the calls run on.
        spec: The state's schema, or None when the workflow has no state.
        state: The state before the calls.
    """

    def __init__(
        self,
        calls: Sequence[ToolCall],
        tools: Mapping[str, Any],
        spec: StateSpec | None,
        state: Mapping[str, JsonValue] | None,
    ) -> None:
        self.spec = spec
        self.state: dict[str, JsonValue] = dict(state or {})
        self._current = dict(self.state)
        # The very call objects of the step: a nested agent's calls (an agent called as a
        # tool runs its own tools in this context) may reuse a model-written id.
        self._mine = {call.id: call for call in calls}
        stateful = [c.id for c in calls if getattr(tools.get(c.name), "injected", ())]
        self._before = dict(zip(stateful[1:], stateful, strict=False))
        self._done = {call_id: asyncio.Event() for call_id in stateful}
        self._changes: dict[str, dict[str, Any]] = {}
        self.returned: dict[str, object] = {}

    def owns(self, call: ToolCall) -> bool:
        """Whether `call` is one of the step's calls (not a nested agent's)."""
        return self._mine.get(call.id) is call

    def gives_state(self, call: ToolCall) -> bool:
        """Whether the call gets the state (a call of this batch, in a workflow with state)."""
        return self.spec is not None and self.owns(call) and call.id in self._done

    @asynccontextmanager
    async def turn(self, call_id: str) -> AsyncIterator[object]:
        """Wait for the earlier calls that take the state, then give this one a copy of the
        state as they left it; what it changes is noted when it ends."""
        assert self.spec is not None
        earlier = self._before.get(call_id)
        try:
            if earlier is not None:
                await self._done[earlier].wait()
            start = dict(self._current)
            seen = self.spec.load(start)
            yield seen
            update = self.spec.changes(start, seen)
            value = self.returned.get(call_id)
            if isinstance(value, Command) and value.update:
                update.update(value.update)
            self._changes[call_id] = update
            if update:
                # A later call sees these changes; `finish` decides whether they are kept.
                with contextlib.suppress(StateUpdateInvalid):
                    self._current = self.spec.apply(self._current, update)
        finally:
            self._done[call_id].set()

    def record(self, call: ToolCall, value: object) -> None:
        """Keep what one of the step's calls returned."""
        if self.owns(call):
            self.returned[call.id] = value

    def finish(
        self, calls: Sequence[ToolCall], results: Sequence[ChatMessage]
    ) -> list[ChatMessage]:
        """Check and record each call's state changes and route on its result, in call order.

        A call whose update breaks the schema (or that updates a workflow without state)
        gets an error result instead, and neither its update nor its route is kept. A call
        that failed keeps nothing.
        """
        running = dict(self.state)
        out = []
        for call, result in zip(calls, results, strict=True):
            value = self.returned.get(call.id)
            if _TOOL_ERROR_KEY in result.metadata or (
                value is None and call.id not in self._changes
            ):
                out.append(result)
                continue
            command = value if isinstance(value, Command) else None
            update = dict(self._changes.get(call.id, {}))
            if call.id not in self._changes and command is not None and command.update:
                update = dict(command.update)
            if not update and (command is None or command.goto is None):
                out.append(result)
                continue
            try:
                if self.spec is None and update:
                    raise StateUpdateInvalid(update, ["this workflow has no shared state"])
                if update and self.spec is not None:
                    running = self.spec.apply(running, update)
            except StateUpdateInvalid as exc:
                text = (
                    f"Error: tool {call.name!r} ran, but its state update was not kept: "
                    f"{'; '.join(exc.problems)}."
                )
                metadata = {**result.metadata, _TOOL_ERROR_KEY: "invalid_state"}
                out.append(result.model_copy(update={"content": text, "metadata": metadata}))
                continue
            marker = {"goto": command.goto if command else None, "update": update or None}
            out.append(
                result.model_copy(update={"metadata": {**result.metadata, COMMAND_KEY: marker}})
            )
        return out


_BATCH: contextvars.ContextVar[ToolBatch | None] = contextvars.ContextVar(
    "memweave_tool_batch", default=None
)


def current_batch() -> ToolBatch | None:
    """The batch of tool calls a workflow step is running, if any."""
    return _BATCH.get()


@contextmanager
def running(batch: ToolBatch) -> Iterator[ToolBatch]:
    """Make `batch` the current one while the calls run."""
    token = _BATCH.set(batch)
    try:
        yield batch
    finally:
        _BATCH.reset(token)
