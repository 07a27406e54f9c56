"""The chats `initiate_chats` is given: AutoGen-style dict specs turned into `ChatSpec`s, and
the checks every chat passes before any chat runs.

A dict spec takes `ChatSpec`'s field names and, for AutoGen code, `summary_args`
(`{"summary_prompt": ...}`), `finished_chat_indexes_to_exclude_from_carryover` (the
complement of `carryover_from`) and `silent` (accepted and ignored: memweave prints nothing).
Any other key is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from memweave.errors import InvalidArgument
from memweave.orchestration._events import TerminateRun
from memweave.orchestration.agent import Agent
from memweave.orchestration.checkpoints import CheckpointStore
from memweave.orchestration.sequential import ChatSpec, HumanInputMode, _check_turns

__all__ = ["HUMAN_INPUT_MODES", "ChatPlan", "plan_chats"]

HUMAN_INPUT_MODES: tuple[str, ...] = get_args(HumanInputMode)
"""The accepted values of `human_input_mode`."""

_FIELDS = frozenset(ChatSpec.model_fields)
_AUTOGEN_KEYS = frozenset(
    {"summary_args", "finished_chat_indexes_to_exclude_from_carryover", "silent"}
)
_REQUIRED = ("recipient", "message")


class ChatPlan:
    """The validated chats of one `initiate_chats` call, each with its sender and mode."""

    def __init__(
        self,
        specs: list[ChatSpec],
        senders: list[Agent],
        modes: list[HumanInputMode],
        responses: dict[str, str | TerminateRun],
    ) -> None:
        self.specs = specs
        """The chats, in order."""
        self.senders = senders
        """Each chat's sender."""
        self.modes = modes
        """Each chat's human input mode."""
        self.responses = responses
        """The answers given to user-input requests, by request id."""


def _from_dict(index: int, data: Mapping[str, Any]) -> ChatSpec:
    where = f"chats[{index}]"
    for key in data:
        if not isinstance(key, str) or (key not in _FIELDS and key not in _AUTOGEN_KEYS):
            known = ", ".join(sorted(_FIELDS | _AUTOGEN_KEYS))
            raise InvalidArgument(f"{where}[{key!r}]", data[key], f"unknown key; known: {known}")
    for key in _REQUIRED:
        if key not in data:
            raise InvalidArgument(where, dict(data), f"a chat needs the key {key!r}")
    fields = {key: value for key, value in data.items() if key in _FIELDS}
    summary_args = data.get("summary_args")
    if summary_args is not None:
        if not isinstance(summary_args, Mapping) or set(summary_args) - {"summary_prompt"}:
            raise InvalidArgument(
                f"{where}['summary_args']", summary_args, "only 'summary_prompt' is supported"
            )
        if "summary_prompt" in summary_args and "summary_prompt" in fields:
            raise InvalidArgument(
                f"{where}['summary_args']", summary_args, "summary_prompt is given twice"
            )
        fields.update(summary_args)
    excluded = data.get("finished_chat_indexes_to_exclude_from_carryover")
    if excluded is not None:
        if "carryover_from" in fields:
            raise InvalidArgument(
                f"{where}['finished_chat_indexes_to_exclude_from_carryover']",
                excluded,
                "give either this or 'carryover_from'",
            )
        if isinstance(excluded, str | bytes) or not isinstance(excluded, Sequence):
            raise InvalidArgument(
                f"{where}['finished_chat_indexes_to_exclude_from_carryover']",
                excluded,
                "expected a list of chat indexes",
            )
        fields["carryover_from"] = [i for i in range(index) if i not in set(excluded)]
    recipient, message = fields.pop("recipient"), fields.pop("message")
    try:
        return ChatSpec(recipient, message, **fields)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}.{exc.name}", exc.value, exc.reason) from None


def _as_spec(index: int, chat: object) -> ChatSpec:
    if isinstance(chat, ChatSpec):
        return chat
    if isinstance(chat, Mapping):
        return _from_dict(index, chat)
    raise InvalidArgument(f"chats[{index}]", chat, "expected a ChatSpec or a dict")


def _check_mode(mode: object, where: str) -> HumanInputMode:
    if mode not in HUMAN_INPUT_MODES:
        raise InvalidArgument(where, mode, f"use one of {', '.join(HUMAN_INPUT_MODES)}")
    return mode  # type: ignore[return-value]


def _check_spec(index: int, spec: ChatSpec, sender: Agent) -> None:
    where = f"chats[{index}]"
    if spec.recipient.name == sender.name:
        raise InvalidArgument(
            f"{where}.recipient", spec.recipient.name, "the sender cannot chat with itself"
        )
    _check_turns(spec.max_turns, where)
    method = spec.summary_method
    if not callable(method) and method not in ("last_msg", "reflection_with_llm"):
        raise InvalidArgument(
            f"{where}.summary_method", method, "use 'last_msg', 'reflection_with_llm' or a function"
        )
    for earlier in spec.carryover_from or ():
        if isinstance(earlier, bool) or not isinstance(earlier, int) or not (0 <= earlier < index):
            raise InvalidArgument(
                f"{where}.carryover_from",
                earlier,
                f"must name an earlier chat, an index in 0..{index - 1}",
            )


def _check_responses(responses: object) -> dict[str, str | TerminateRun]:
    if responses is None:
        return {}
    if not isinstance(responses, Mapping):
        raise InvalidArgument("responses", responses, "expected a dict of request id to answer")
    checked: dict[str, str | TerminateRun] = {}
    for request_id, answer in responses.items():
        if not isinstance(request_id, str):
            raise InvalidArgument("responses", request_id, "a request id is a str")
        if not isinstance(answer, str | TerminateRun):
            raise InvalidArgument(
                f"responses[{request_id!r}]",
                answer,
                "answer with a str (empty: let the sender's model reply, or end where the "
                "chat would end) or request.terminate()",
            )
        checked[request_id] = answer
    return checked


def plan_chats(
    sender: Agent | None,
    chats: object,
    *,
    human_input_mode: object,
    checkpoints: object,
    responses: object,
) -> ChatPlan:
    """Turn `initiate_chats`' arguments into a `ChatPlan`, checking everything first.

    Raises:
        InvalidArgument: A bad sender, chat, key, mode or response, or human input asked for
            without a checkpoint store or without a session id on every chat.
    """
    if sender is not None and not isinstance(sender, Agent):
        raise InvalidArgument("sender", sender, "expected an Agent or None")
    if isinstance(chats, ChatSpec | Mapping | str) or not isinstance(chats, Sequence):
        raise InvalidArgument("chats", chats, "expected a sequence of ChatSpec or dicts")
    default_mode = _check_mode(human_input_mode, "human_input_mode")
    specs = [_as_spec(index, chat) for index, chat in enumerate(chats)]
    senders: list[Agent] = []
    modes: list[HumanInputMode] = []
    for index, spec in enumerate(specs):
        chosen = spec.sender if spec.sender is not None else sender
        if chosen is None:
            raise InvalidArgument(
                f"chats[{index}].sender", None, "no sender: give one here or to initiate_chats"
            )
        _check_spec(index, spec, chosen)
        senders.append(chosen)
        mode = spec.human_input_mode if spec.human_input_mode is not None else default_mode
        modes.append(_check_mode(mode, f"chats[{index}].human_input_mode"))
    answers = _check_responses(responses)
    if checkpoints is not None and not isinstance(checkpoints, CheckpointStore):
        raise InvalidArgument("checkpoints", checkpoints, "expected a CheckpointStore or None")
    if all(mode == "NEVER" for mode in modes):
        if answers:
            raise InvalidArgument("responses", sorted(answers)[0], "no chat asks for human input")
        return ChatPlan(specs, senders, modes, answers)
    if checkpoints is None:
        raise InvalidArgument(
            "checkpoints",
            None,
            "human input needs a CheckpointStore to remember the human's decisions between "
            "calls (InMemoryCheckpointStore() in one process, a SQL or Redis store to resume "
            "in another)",
        )
    for index, spec in enumerate(specs):
        if spec.session_id is None:
            raise InvalidArgument(
                f"chats[{index}].session_id",
                None,
                "with human input every chat needs a session id, so a paused run resumes",
            )
    return ChatPlan(specs, senders, modes, answers)
