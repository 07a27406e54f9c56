"""A scripted model for fact-extraction tests: it plays both steps of a `FactExtractor`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from memweave.context.facts import EXTRACTION_PROMPT
from memweave.llm import ChatResponse, Usage
from memweave.messages import ChatMessage
from memweave.testing import ScriptedChatClient

Memory = dict[str, str]
"""A stored fact as the consolidation request lists it: `{"id": "0", "text": "..."}`."""
Decide = Callable[[list[Memory], list[str]], Any]
Extract = Callable[[list[str]], Any]

_LINE = re.compile(r"^\[[^\]]*\] user(?: \([^)]*\))?: (.*)$")


def said_by_user(lines: list[str]) -> list[str]:
    """Extraction that takes each user message as one fact."""
    return [match.group(1) for line in lines if (match := _LINE.match(line))]


def add_all(existing: list[Memory], facts: list[str]) -> list[dict[str, Any]]:
    """Consolidation that adds every new fact."""
    return [{"event": "ADD", "text": fact} for fact in facts]


class FactModel:
    """Plays the extractor's model: `extract` turns the transcript's lines into facts, and
    `decide` turns the listed memories and new facts into decisions.

    Either may return a str, sent as the reply as it is (for malformed replies), or data,
    sent as `{"facts": ...}` / `{"decisions": ...}`. Every consolidation request is kept in
    `shown`, and each reply reports `usage` tokens.
    """

    def __init__(
        self,
        *,
        decide: Decide = add_all,
        extract: Extract = said_by_user,
        usage: Usage | None = None,
    ) -> None:
        self.decide = decide
        self.extract = extract
        self.usage = usage or Usage()
        self.shown: list[tuple[list[Memory], list[str]]] = []
        self.gate: asyncio.Event | None = None
        """While set and not yet set free, every call waits for it."""
        self.called: asyncio.Event | None = None
        """Set when a call arrives."""
        self.failures: list[BaseException] = []
        self.client = ScriptedChatClient(self._reply)

    async def _reply(
        self, messages: list[ChatMessage], tools: Any, options: dict[str, Any]
    ) -> ChatResponse:
        if self.called is not None:
            self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        request = messages[1].text
        if messages[0].text == EXTRACTION_PROMPT:
            lines = request.split("\n")[1:]
            answer = self.extract(lines)
            text = answer if isinstance(answer, str) else json.dumps({"facts": answer})
        else:
            head, _, facts = request.partition("\n\nNew facts:\n")
            existing = json.loads(head.removeprefix("Existing memories:\n"))
            self.shown.append((existing, json.loads(facts)))
            answer = self.decide(existing, json.loads(facts))
            text = answer if isinstance(answer, str) else json.dumps({"decisions": answer})
        return ChatResponse(message=ChatMessage.assistant(text), usage=self.usage)


def by_text(existing: list[Memory], text: str) -> str:
    """The listed id of the memory with this text."""
    return next(memory["id"] for memory in existing if memory["text"] == text)
