"""`SummarizingReducer`: replace what falls out of the window with a running LLM summary."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from memweave.errors import ConfigurationError, InvalidMessage, ModelError
from memweave.llm import ChatClient
from memweave.messages import ChatMessage
from memweave.reducers._groups import as_message_list
from memweave.reducers.base import ChatReducer

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_SUMMARY_PROMPT",
    "SUMMARY_METADATA_KEY",
    "SUMMARY_PREFIX",
    "SummarizingReducer",
    "SummaryCoverage",
    "is_summary",
    "summary_coverage",
]

logger = logging.getLogger(__name__)

SUMMARY_METADATA_KEY = "memweave.summary"
"""Metadata key marking a summary message; its value is `{"first": id, "last": id, "count": n}`
(see `SummaryCoverage`). Summaries stored by earlier versions hold `{"covers": [ids, ...]}`,
which is still read."""

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
"""The first line of every summary message's text."""

DEFAULT_SUMMARY_PROMPT = (
    "Summarize the conversation above so that it can be continued without it. Keep the "
    "facts, names, numbers, decisions, tool results that matter, open questions and what the "
    "user wants; leave out small talk. If the conversation starts with an earlier summary, "
    "fold it in and write one updated summary. Reply with the summary only."
)
"""The instruction sent, as a user turn after the transcript, when no `prompt` is given."""

DEFAULT_CACHE_SIZE = 1024
"""How many histories' summaries a reducer remembers in memory by default (see `cache_size`)."""


@dataclass(frozen=True, slots=True)
class SummaryCoverage:
    """Which messages a summary replaces: `count` consecutive non-system messages from the
    start of the conversation, oldest first, from the one with id `first` to the one with id
    `last` (a stored summary has taken their place, so they are no longer in the history).

    Message ids are unique within a history and a history only grows at its end (or loses
    messages at its start), so these three values pin down the covered run while staying the
    same size however long the conversation grows.
    """

    first: str
    """Id of the oldest covered message."""
    last: str
    """Id of the newest covered message."""
    count: int
    """How many messages are covered."""


def is_summary(message: ChatMessage) -> bool:
    """Return whether `message` is a summary written by `SummarizingReducer`."""
    return isinstance(message.metadata.get(SUMMARY_METADATA_KEY), dict)


def summary_coverage(message: ChatMessage) -> SummaryCoverage:
    """Return which messages a summary message replaces.

    Reads the current marker (`first`, `last`, `count`) and the one stored by earlier
    versions (`covers`: every covered id).

    Raises:
        InvalidMessage: `message` is not a summary, or its marker is malformed.
    """
    marker = message.metadata.get(SUMMARY_METADATA_KEY)
    if isinstance(marker, dict):
        first, last, count = marker.get("first"), marker.get("last"), marker.get("count")
        if (
            isinstance(first, str)
            and isinstance(last, str)
            and isinstance(count, int)
            and not isinstance(count, bool)
            and count > 0
        ):
            return SummaryCoverage(first, last, count)
        covers = marker.get("covers")
        if isinstance(covers, list) and covers and all(isinstance(i, str) for i in covers):
            return SummaryCoverage(str(covers[0]), str(covers[-1]), len(covers))
    raise InvalidMessage(
        f"not a summary: {SUMMARY_METADATA_KEY!r} needs 'first' and 'last' message ids and a "
        "positive 'count'",
        field="metadata",
    )


def _marker(coverage: SummaryCoverage) -> dict[str, str | int]:
    return {"first": coverage.first, "last": coverage.last, "count": coverage.count}


def _summary_id(previous: ChatMessage | None, dropped: Sequence[ChatMessage]) -> str:
    """A deterministic id for the summary of `previous` (a summary, or None) and `dropped`."""
    parts = [previous.id if previous is not None else "", *(m.id for m in dropped)]
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"summary-{digest}"


def _ids_digest(messages: Sequence[ChatMessage]) -> bytes:
    return hashlib.blake2b("\x1f".join(m.id for m in messages).encode(), digest_size=16).digest()


def _after_covered(rest: list[ChatMessage], coverage: SummaryCoverage) -> list[ChatMessage]:
    """`rest` without the covered messages it still holds: those up to the newest covered."""
    for index in range(len(rest) - 1, -1, -1):
        if rest[index].id == coverage.last:
            return rest[index + 1 :]
    return rest


@dataclass(frozen=True, slots=True)
class _Remembered:
    summary: ChatMessage
    coverage: SummaryCoverage
    digest: bytes
    """Digest of every covered id, so a reuse checks the whole covered run, not its ends."""


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
    `metadata[SUMMARY_METADATA_KEY]` says which messages it replaces (`summary_coverage`: the
    first and last ids and a count, so it stays small however long the history grows). While
    the history grows back up to `trigger_at`, the same summary message is returned, and the
    next summarization sends the model only the previous summary and the newly dropped
    messages. Where the previous summary comes from depends on what the reducer is given:

    - Its own previous output, or any history holding a summary (a provider with
      `reduce_on="write"` stores the reduced history, summary included): the summary is read
      from the input. This is the durable mode: the summary is reused and extended across
      processes and restarts, and never recomputed.
    - The full history every turn (a provider with `reduce_on="read"`, or calling `reduce` on
      `list_messages` output): the summary exists only in this reducer object, which
      remembers the summaries of the `cache_size` most recently reduced histories. A history
      it does not remember (evicted, another process, after a restart) is summarized again
      from scratch, with one model call over all of its older messages.

    The model gets the messages to summarize as they are, then `prompt` as a user turn. When
    the call fails (`ModelError`) or answers with no text, a warning is logged and the history
    is returned unreduced: as given, or with the previous summary and everything after it.

    Args:
        client: The chat model that writes summaries.
        keep_last: How many of the newest messages to keep verbatim (at least 1).
        trigger_at: Summarize when more than this many messages are held (> `keep_last`).
        prompt: The instruction for the model; default `DEFAULT_SUMMARY_PROMPT`.
        cache_size: How many histories' summaries to remember in memory for full-history
            input (least recently used go first); default `DEFAULT_CACHE_SIZE` (1024), each
            entry about the size of one summary message. 0 remembers none.

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
        cache_size: int = DEFAULT_CACHE_SIZE,
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
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be a non-negative int, got {cache_size!r}")
        self.client = client
        self.keep_last = keep_last
        self.trigger_at = trigger_at
        self.prompt = prompt if prompt is not None else DEFAULT_SUMMARY_PROMPT
        self.cache_size = cache_size
        self._summaries: OrderedDict[str, _Remembered] = OrderedDict()
        # One reducer may serve several threads; the LRU reorders itself on every hit.
        self._lock = threading.Lock()

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
        coverage: SummaryCoverage | None = None
        # With the whole history in hand, the covered run is known in full and can be
        # remembered; a summary from the input has its covered messages elsewhere or gone.
        full = rest if summary is None else None
        if summary is not None:
            coverage = summary_coverage(summary)
            rest = _after_covered(rest, coverage)
        else:
            remembered = self._remembered(rest)
            if remembered is not None:
                summary, coverage = remembered.summary, remembered.coverage
                rest = rest[coverage.count :]

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
        new_coverage = SummaryCoverage(
            first=coverage.first if coverage is not None else dropped[0].id,
            last=dropped[-1].id,
            count=(coverage.count if coverage is not None else 0) + len(dropped),
        )
        new_summary = ChatMessage.user(
            SUMMARY_PREFIX + text,
            id=_summary_id(summary, dropped),
            created_at=dropped[-1].created_at,
            metadata={SUMMARY_METADATA_KEY: _marker(new_coverage)},
        )
        if full is not None:
            self._remember(new_summary, new_coverage, full[: new_coverage.count])
        return [*systems, new_summary, *rest[cut:]]

    def _remembered(self, rest: list[ChatMessage]) -> _Remembered | None:
        """The remembered summary covering exactly a prefix of `rest`, if any."""
        if not rest or not self.cache_size:
            return None
        with self._lock:
            found = self._summaries.get(rest[0].id)
        if found is None:
            return None
        count = found.coverage.count
        if (
            count > len(rest)
            or rest[count - 1].id != found.coverage.last
            or _ids_digest(rest[:count]) != found.digest
        ):
            return None
        with self._lock:
            if rest[0].id in self._summaries:
                self._summaries.move_to_end(rest[0].id)
        return found

    def _remember(
        self, summary: ChatMessage, coverage: SummaryCoverage, covered: list[ChatMessage]
    ) -> None:
        if not self.cache_size:
            return
        entry = _Remembered(summary, coverage, _ids_digest(covered))
        with self._lock:
            self._summaries[coverage.first] = entry
            self._summaries.move_to_end(coverage.first)
            while len(self._summaries) > self.cache_size:
                self._summaries.popitem(last=False)

    def __repr__(self) -> str:
        return (
            f"SummarizingReducer(client={self.client!r}, keep_last={self.keep_last}, "
            f"trigger_at={self.trigger_at}, cache_size={self.cache_size})"
        )
