"""`SummarizingReducer`: replace what falls out of the window with a running LLM summary."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

from memweave.errors import ConfigurationError, InvalidMessage, ModelError
from memweave.llm import ChatClient
from memweave.messages import ChatMessage
from memweave.reducers._groups import as_message_list
from memweave.reducers.base import ChatReducer

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "SUMMARY_METADATA_KEY",
    "SUMMARY_PREFIX",
    "SummarizingReducer",
    "is_summary",
    "summary_covers",
]

logger = logging.getLogger(__name__)

SUMMARY_METADATA_KEY = "memweave.summary"
"""Metadata key marking a summary message; its value is `{"covers": [message ids, ...]}`."""

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
"""The first line of every summary message's text."""

DEFAULT_SUMMARY_PROMPT = (
    "Summarize the conversation above so that it can be continued without it. Keep the "
    "facts, names, numbers, decisions, tool results that matter, open questions and what the "
    "user wants; leave out small talk. If the conversation starts with an earlier summary, "
    "fold it in and write one updated summary. Reply with the summary only."
)
"""The instruction sent, as a user turn after the transcript, when no `prompt` is given."""

_CACHE_SIZE = 64


def is_summary(message: ChatMessage) -> bool:
    """Return whether `message` is a summary written by `SummarizingReducer`."""
    return isinstance(message.metadata.get(SUMMARY_METADATA_KEY), dict)


def summary_covers(message: ChatMessage) -> tuple[str, ...]:
    """Return the ids of the messages a summary message replaces, oldest first.

    Raises:
        InvalidMessage: `message` is not a summary, or its marker is malformed.
    """
    marker = message.metadata.get(SUMMARY_METADATA_KEY)
    covers = marker.get("covers") if isinstance(marker, dict) else None
    if not isinstance(covers, list) or not all(isinstance(item, str) for item in covers):
        raise InvalidMessage(
            f"not a summary: {SUMMARY_METADATA_KEY!r} needs a list of message ids under 'covers'",
            field="metadata",
        )
    return tuple(str(item) for item in covers)


def _summary_id(covers: tuple[str, ...]) -> str:
    digest = hashlib.blake2b("\x1f".join(covers).encode(), digest_size=16).hexdigest()
    return f"summary-{digest}"


def _transcript(messages: list[ChatMessage]) -> list[ChatMessage]:
    """`messages` without tool results whose call is not among them (a model would reject it)."""
    called = {call.id for message in messages for call in message.tool_calls}
    return [m for m in messages if m.role != "tool" or m.tool_call_id in called]


def _cut(pending: list[ChatMessage], keep_last: int) -> int:
    """Index of the first kept message: at least `keep_last` kept, never splitting a group."""
    cut = max(0, len(pending) - keep_last)
    while cut > 0 and pending[cut].role == "tool":
        cut -= 1
    return cut


class SummarizingReducer(ChatReducer):
    """Replaces older messages with one running summary written by a chat model.

    When the history holds more than `trigger_at` messages (system messages aside, a summary
    counting as one), everything but the newest `keep_last` is replaced by a single summary
    message, placed after the system messages. An assistant tool call and its results stay
    together: the kept part grows back to the start of their group.

    The summary is a user message whose text starts with `SUMMARY_PREFIX` and whose
    `metadata[SUMMARY_METADATA_KEY]["covers"]` lists the ids of the messages it replaces. It
    is reused and extended, never recomputed from scratch: while the history grows back up to
    `trigger_at`, the same summary message is returned, and the next summarization sends the
    model only the previous summary and the newly dropped messages. That works whether the
    reducer sees the full history every turn (reduce on read: the summary is remembered by the
    ids it covers) or its own previous output (reduce on write: the summary is in the input).

    The model gets the messages to summarize as they are, then `prompt` as a user turn. When
    the call fails (`ModelError`) or answers with no text, a warning is logged and the history
    is returned unreduced: as given, or with the previous summary and everything after it.

    Args:
        client: The chat model that writes summaries.
        keep_last: How many of the newest messages to keep verbatim (at least 1).
        trigger_at: Summarize when more than this many messages are held (> `keep_last`).
        prompt: The instruction for the model; default `DEFAULT_SUMMARY_PROMPT`.

    Raises:
        ConfigurationError: A bad option.

    Example:
        ```python
        reducer = SummarizingReducer(OpenAIChatClient("gpt-4o-mini"), keep_last=10, trigger_at=30)
        window = await reducer.reduce(history)
        ```
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        keep_last: int,
        trigger_at: int,
        prompt: str | None = None,
    ) -> None:
        if not callable(getattr(client, "complete", None)):
            raise ConfigurationError(f"client must be a ChatClient with complete(), got {client!r}")
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ConfigurationError(f"keep_last must be a positive int, got {keep_last!r}")
        if (
            isinstance(trigger_at, bool)
            or not isinstance(trigger_at, int)
            or trigger_at <= keep_last
        ):
            raise ConfigurationError(
                f"trigger_at must be an int greater than keep_last={keep_last}, got {trigger_at!r}"
            )
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise ConfigurationError(f"prompt must be a non-empty str or None, got {prompt!r}")
        self.client = client
        self.keep_last = keep_last
        self.trigger_at = trigger_at
        self.prompt = prompt if prompt is not None else DEFAULT_SUMMARY_PROMPT
        self._summaries: OrderedDict[str, ChatMessage] = OrderedDict()

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Return the history with its older part replaced by a summary, when it is too long.

        Raises:
            InvalidMessage: An item is not a `ChatMessage`, or a summary marker is malformed.
        """
        history = as_message_list(messages)
        systems: list[ChatMessage] = []
        rest: list[ChatMessage] = []
        summary: ChatMessage | None = None
        for position, message in enumerate(history):
            if not isinstance(message, ChatMessage):
                raise InvalidMessage(
                    f"expected a ChatMessage, got {type(message).__name__}", position=position
                )
            if is_summary(message):
                summary = message
            elif message.role == "system":
                systems.append(message)
            else:
                rest.append(message)
        covers: tuple[str, ...] = ()
        if summary is not None:
            covers = summary_covers(summary)
            covered = set(covers)
            rest = [message for message in rest if message.id not in covered]
        else:
            summary, covers = self._remembered(rest)
            rest = rest[len(covers) :]

        def unreduced() -> list[ChatMessage]:
            return list(history) if summary is None else [*systems, summary, *rest]

        if len(rest) + (summary is not None) <= self.trigger_at:
            return unreduced()
        cut = _cut(rest, self.keep_last)
        if cut == 0:
            return unreduced()
        dropped = rest[:cut]
        request = _transcript([*([summary] if summary is not None else []), *dropped])
        request.append(ChatMessage.user(self.prompt))
        try:
            response = await self.client.complete(request)
        except ModelError as exc:
            logger.warning(
                "summarizing %d messages failed, keeping the history unreduced: %s",
                len(dropped),
                exc,
            )
            return unreduced()
        text = response.message.text.strip()
        text = text.removeprefix(SUMMARY_PREFIX.strip()).strip()
        if not text:
            logger.warning(
                "the model answered the summary request for %d messages with no text; "
                "keeping the history unreduced",
                len(dropped),
            )
            return unreduced()
        new_covers = covers + tuple(message.id for message in dropped)
        new_summary = ChatMessage.user(
            SUMMARY_PREFIX + text,
            id=_summary_id(new_covers),
            created_at=dropped[-1].created_at,
            metadata={SUMMARY_METADATA_KEY: {"covers": list(new_covers)}},
        )
        self._remember(new_summary, new_covers)
        return [*systems, new_summary, *rest[cut:]]

    def _remembered(self, rest: list[ChatMessage]) -> tuple[ChatMessage | None, tuple[str, ...]]:
        """The remembered summary covering a prefix of `rest`, and the ids it covers."""
        if not rest:
            return None, ()
        summary = self._summaries.get(rest[0].id)
        if summary is None:
            return None, ()
        covers = summary_covers(summary)
        if len(covers) > len(rest) or any(
            message.id != covered for message, covered in zip(rest, covers, strict=False)
        ):
            return None, ()
        self._summaries.move_to_end(rest[0].id)
        return summary, covers

    def _remember(self, summary: ChatMessage, covers: tuple[str, ...]) -> None:
        self._summaries[covers[0]] = summary
        self._summaries.move_to_end(covers[0])
        while len(self._summaries) > _CACHE_SIZE:
            self._summaries.popitem(last=False)

    def __repr__(self) -> str:
        return (
            f"SummarizingReducer(client={self.client!r}, keep_last={self.keep_last}, "
            f"trigger_at={self.trigger_at})"
        )
