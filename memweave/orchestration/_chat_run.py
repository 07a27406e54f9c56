"""Running the chats of `initiate_chats`: turns, the human in the loop, and resuming.

A chat's progress is its stored transcript: who speaks next follows from it (see
`next_step`), so a chat run again on its session goes on where it stopped. A human speaking
for the sender (`human_input_mode`) is asked through a `UserInputRequest` whose id derives
from the session and the message it answers, so the same question gets the same id in any
process. Three answers are possible, as in AutoGen: text (stored as the sender's message,
marked with `HUMAN_INPUT_KEY`), an empty answer (the sender's model replies, or the chat
ends where it would have ended anyway) and `exit` / `request.terminate()` (the chat ends).
The two that store no message are recorded as checkpoints of the thread
`(CHATS_WORKFLOW, session id)`, pinned to the message they answer, beside the `waiting`
checkpoint of the open question.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from memweave.errors import InvalidArgument
from memweave.llm import Usage
from memweave.messages import ChatMessage
from memweave.orchestration._chat_specs import ChatPlan
from memweave.orchestration._events import TerminateRun, UserInputRequest
from memweave.orchestration._transcript import Transcript
from memweave.orchestration._views import agent_of, tag_messages
from memweave.orchestration.agent import Agent
from memweave.orchestration.checkpoints import Checkpoint, CheckpointStore, PendingRequest
from memweave.orchestration.sequential import (
    CHAT_OPENING_KEY,
    DEFAULT_MAX_TURNS,
    ChatResult,
    ChatSpec,
    HumanInputMode,
    _agent_turn,
    _is_answer,
    _stored_start,
    _summarize,
    carryover_block,
    is_termination,
)
from memweave.providers.base import ChatHistoryProvider
from memweave.session import Session

__all__ = ["CHATS_WORKFLOW", "EXIT", "HUMAN_INPUT_KEY", "next_step", "request_id", "run_chats"]

CHATS_WORKFLOW = "memweave.initiate_chats"
"""The workflow name the human's decisions are checkpointed under, per chat session."""

HUMAN_INPUT_KEY = "memweave.human_input"
"""Metadata key on a message the human wrote for the sender: `{"request_id": ...}`."""

EXIT = "exit"
"""An answer that ends the chat, as typing `exit` does in AutoGen."""

_Decision = Literal["running", "idle"]


@dataclass(frozen=True, slots=True)
class Ask:
    """The human speaking for the sender is asked before the sender's next turn."""

    final: bool
    """Whether the chat would end here without the human (a `TERMINATE` or `max_turns`
    reached): then an empty answer ends it, instead of letting the sender's model reply."""


def request_id(session_id: str, message_id: str) -> str:
    """The id of the question asked after `message_id` in a chat session: the same in every
    process, different for every session and message."""
    raw = json.dumps([session_id, message_id], ensure_ascii=False).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def next_step(
    chat: Sequence[ChatMessage],
    sender: Agent,
    recipient: Agent,
    turns: int,
    mode: HumanInputMode,
) -> Agent | Ask | None:
    """What comes next in a chat (its messages from the opening on): an agent's turn, a
    question to the human, or nothing (the chat is over).

    A turn cut short (the transcript ends in tool calls or results) is its speaker's to
    finish. After the sender, the recipient answers unless the sender ended with
    `TERMINATE`. After the recipient, the chat is over on a `TERMINATE` or its `turns`-th
    answer; the human is asked there in "TERMINATE" mode, and before every sender turn too
    in "ALWAYS" mode.
    """
    last = chat[-1]
    author = sender if agent_of(last) == sender.name else recipient
    if not _is_answer(last):
        return author
    if author is sender:
        return None if is_termination(last) else recipient
    answers = sum(1 for m in chat[1:] if _is_answer(m) and agent_of(m) == recipient.name)
    final = is_termination(last) or answers >= turns
    if mode == "NEVER":
        return None if final else sender
    if mode == "TERMINATE" and not final:
        return sender
    return Ask(final=final)


class _Chats:
    """One `initiate_chats` call: the plan, the stores, and which answers were used."""

    def __init__(
        self,
        plan: ChatPlan,
        history: ChatHistoryProvider,
        checkpoints: CheckpointStore | None,
    ) -> None:
        self.plan = plan
        self.history = history
        self.checkpoints = checkpoints
        self.used: set[str] = set()
        self.seen: set[str] = set()

    async def run(self) -> list[ChatResult]:
        results: list[ChatResult] = []
        for index, spec in enumerate(self.plan.specs):
            explicit = (
                [spec.carryover] if isinstance(spec.carryover, str) else list(spec.carryover or [])
            )
            chosen = range(index) if spec.carryover_from is None else spec.carryover_from
            summaries = [results[i].summary for i in chosen if results[i].summary]
            result = await self.chat(index, [*explicit, *summaries])
            results.append(result)
            if result.request is not None:
                break
        unknown = sorted(set(self.plan.responses) - self.used - self.seen)
        if unknown:
            raise InvalidArgument(
                "responses", unknown[0], "no question of these chats has this request id"
            )
        return results

    async def chat(self, index: int, carryover: Sequence[str]) -> ChatResult:
        spec = self.plan.specs[index]
        sender, mode = self.plan.senders[index], self.plan.modes[index]
        session = Session(id=spec.session_id or uuid.uuid4().hex)
        # Turns read only their agents' windows. Where a resumed chat starts is settled by
        # the newest chat opening, or by a message from neither agent (no chat goes on past
        # one); the result's `chat_history` reads the rest.
        transcript = Transcript(self.history, session.id)
        speakers = {sender.name, spec.recipient.name}
        await transcript.ensure(
            lambda held: any(
                CHAT_OPENING_KEY in m.metadata or agent_of(m) not in speakers for m in held
            )
        )
        chat, used = await self.opening(spec, sender, session, transcript, carryover)
        usage = Usage()
        turns = spec.max_turns if spec.max_turns is not None else DEFAULT_MAX_TURNS
        while (step := next_step(chat, sender, spec.recipient, turns, mode)) is not None:
            if isinstance(step, Agent):
                speaker = step
            else:
                outcome = await self.ask(step, chat, sender, session)
                if isinstance(outcome, UserInputRequest):
                    self.seen.update(request_id(session.id, m.id) for m in chat)
                    return ChatResult(
                        session_id=session.id,
                        chat_history=tuple(await transcript.whole()),
                        summary="",
                        carryover=used,
                        usage=usage,
                        request=outcome,
                    )
                if outcome == "idle":
                    break
                if isinstance(outcome, ChatMessage):
                    transcript.extend([outcome])
                    chat.append(outcome)
                    continue
                speaker = sender  # the human chose the sender's model's reply
            produced, used_now = await _agent_turn(speaker, session, self.history, transcript)
            transcript.extend(produced)
            chat.extend(produced)
            usage = usage + used_now
        self.seen.update(request_id(session.id, m.id) for m in chat)
        summary, used_now = await _summarize(spec, sender, session, transcript)
        return ChatResult(
            session_id=session.id,
            chat_history=tuple(await transcript.whole()),
            summary=summary,
            carryover=used,
            usage=usage + used_now,
        )

    async def opening(
        self,
        spec: ChatSpec,
        sender: Agent,
        session: Session,
        transcript: Transcript,
        carryover: Sequence[str],
    ) -> tuple[list[ChatMessage], tuple[str, ...]]:
        """The chat so far and the carryover its opening got: stored ones when the session's
        last chat is this one, else a new opening, stored now."""
        held = transcript.messages
        start = _stored_start(held, sender, spec)
        if start is not None:
            chat = held[start:]
            stored = chat[0].metadata[CHAT_OPENING_KEY]
            items = stored.get("carryover") if isinstance(stored, dict) else None
            used = tuple(str(item) for item in items) if isinstance(items, list) else ()
            return chat, used
        text = carryover_block(spec.message, carryover)
        marker = {CHAT_OPENING_KEY: {"carryover": list(carryover)}}
        opening = tag_messages([ChatMessage.assistant(text, metadata=marker)], sender.name)
        await self.history.add_messages(session.id, opening)
        transcript.extend(opening)
        return list(opening), tuple(carryover)

    async def ask(
        self, step: Ask, chat: list[ChatMessage], sender: Agent, session: Session
    ) -> UserInputRequest | ChatMessage | _Decision:
        """Ask the human about the chat's newest message, or apply an answer to it.

        Returns the open request; the human's message, stored; `"running"` when the sender's
        model replies; or `"idle"` when the chat ends.
        """
        assert self.checkpoints is not None
        last = chat[-1]
        rid = request_id(session.id, last.id)
        latest = await self.checkpoints.get_checkpoint(CHATS_WORKFLOW, session.id)
        if latest is not None and latest.last_message_id == last.id:
            if latest.status == "idle":
                return "idle"
            if latest.status == "running":
                return "running"
        answer = self.plan.responses.get(rid)
        if answer is None:
            await self.save("waiting", rid, last.id, sender, session, latest)
            since = max((i for i, m in enumerate(chat) if agent_of(m) == sender.name), default=0)
            return UserInputRequest(
                request_id=rid, agent=sender.name, messages=tuple(chat[since + 1 :])
            )
        self.used.add(rid)
        text = "" if isinstance(answer, TerminateRun) else answer.strip()
        if isinstance(answer, TerminateRun) or text == EXIT or (not text and step.final):
            await self.save("idle", rid, last.id, sender, session, latest)
            return "idle"
        if not text:
            await self.save("running", rid, last.id, sender, session, latest)
            return "running"
        written = ChatMessage.assistant(
            answer, id=rid, metadata={HUMAN_INPUT_KEY: {"request_id": rid}}
        )
        message = tag_messages([written], sender.name)[0]
        await self.history.add_messages(session.id, [message])
        return message

    async def save(
        self,
        status: Literal["waiting", "running", "idle"],
        rid: str,
        last_id: str,
        sender: Agent,
        session: Session,
        latest: Checkpoint | None,
    ) -> None:
        assert self.checkpoints is not None
        pending: tuple[PendingRequest, ...] = ()
        if status == "waiting":
            pending = (PendingRequest(request_id=rid, kind="user_input", agent=sender.name),)
        await self.checkpoints.save_checkpoint(
            Checkpoint(
                id=f"{status}-{rid}",
                parent_id=latest.id if latest is not None else None,
                workflow=CHATS_WORKFLOW,
                session_id=session.id,
                last_message_id=last_id,
                status=status,
                current_agent=sender.name,
                pending=pending,
                session=session.to_dict(),
            )
        )


async def run_chats(
    plan: ChatPlan, history: ChatHistoryProvider, checkpoints: CheckpointStore | None
) -> list[ChatResult]:
    """Run the planned chats in order (see `initiate_chats`); stop at the first question."""
    return await _Chats(plan, history, checkpoints).run()
