"""The data of fact extraction: what the model answers, what a change records, what a call did.

Public through `memweave.context.facts`. The reply models (`ExtractedFacts`, `FactDecisions`)
describe the JSON the model is asked for; they are lenient where models commonly wander (an
id given as a number, an event in lower case, an extra `reason` key) and strict where it
matters (an UPDATE without its id or text is no decision).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memweave.llm import Usage

__all__ = [
    "AddDecision",
    "DeleteDecision",
    "ExtractedFacts",
    "ExtractionStats",
    "FactDecision",
    "FactDecisions",
    "FactExtraction",
    "FactPlan",
    "MemoryEvent",
    "MemoryKind",
    "MemoryVersion",
    "NoneDecision",
    "RememberResult",
    "UpdateDecision",
]

MemoryKind: TypeAlias = Literal["turn", "fact"]
"""What a memory is: `turn`, a message's text stored word for word (`add`, `invoked`), or
`fact`, a statement extracted from messages and kept up to date by a `FactExtractor`."""

MemoryEvent: TypeAlias = Literal["ADD", "UPDATE", "DELETE"]
"""A change of a fact: added, its text replaced, or deleted."""

# Replies come from a model: extra keys (a "reason") are ignored, and an id written as a
# number is read as its digits.
_REPLY = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


class ExtractedFacts(BaseModel):
    """The extraction reply: `{"facts": ["...", ...]}`."""

    model_config = _REPLY

    facts: list[str]
    """The facts found, each one self-contained sentence; empty when there is none."""


class AddDecision(BaseModel):
    """Store a new fact."""

    model_config = _REPLY

    event: Literal["ADD"]
    """Marks an addition."""
    text: str = Field(min_length=1)
    """The fact to store."""


class UpdateDecision(BaseModel):
    """Replace the text of an existing memory."""

    model_config = _REPLY

    event: Literal["UPDATE"]
    """Marks a replacement."""
    id: str = Field(min_length=1)
    """The memory's id as listed in the request (`"0"`, `"1"`, ...)."""
    text: str = Field(min_length=1)
    """The memory's new text, replacing the old one whole."""


class DeleteDecision(BaseModel):
    """Delete an existing memory that is no longer true."""

    model_config = _REPLY

    event: Literal["DELETE"]
    """Marks a deletion."""
    id: str = Field(min_length=1)
    """The memory's id as listed in the request."""


class NoneDecision(BaseModel):
    """Change nothing: the memories already hold the fact."""

    model_config = _REPLY

    event: Literal["NONE"]
    """Marks no change."""
    id: str | None = None
    """The memory that already holds the fact, when the model names one."""
    text: str | None = None
    """The fact, when the model repeats it."""


FactDecision: TypeAlias = Annotated[
    AddDecision | UpdateDecision | DeleteDecision | NoneDecision, Field(discriminator="event")
]
"""One decision of the consolidation reply, told apart by its `event`."""


class FactDecisions(BaseModel):
    """The consolidation reply: `{"decisions": [{"event": "ADD", "text": "..."}, ...]}`."""

    model_config = _REPLY

    decisions: list[FactDecision]
    """What to do, in order; ids refer to the existing memories as numbered in the request."""

    @model_validator(mode="before")
    @classmethod
    def _upper_events(cls, data: Any) -> Any:
        # "add" and "Add" mean ADD; anything else is left for validation to refuse.
        if isinstance(data, dict) and isinstance(data.get("decisions"), list):
            data = {
                **data,
                "decisions": [
                    {**item, "event": item["event"].strip().upper()}
                    if isinstance(item, dict) and isinstance(item.get("event"), str)
                    else item
                    for item in data["decisions"]
                ],
            }
        return data


class FactExtraction(BaseModel):
    """What `FactExtractor.extract` found in a batch of messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    facts: tuple[str, ...] = ()
    """The facts, whitespace-trimmed, without repeats, at most `max_facts`."""
    usage: Usage = Usage()
    """Tokens the model calls took, retries included."""
    malformed: bool = False
    """True when every reply was unusable and the batch was skipped (logged as a warning)."""


class FactPlan(BaseModel):
    """What `FactExtractor.decide` asked for: decisions about new facts and existing memories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decisions: tuple[FactDecision, ...] = ()
    """The model's decisions, validated, not yet checked against the memories."""
    usage: Usage = Usage()
    """Tokens the model calls took, retries included."""
    malformed: bool = False
    """True when every reply was unusable and nothing is to change (logged as a warning)."""


class MemoryVersion(BaseModel):
    """One change of a fact, as kept in its history (`VectorMemory.history`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_id: str
    """The fact's id."""
    version: int = Field(ge=1)
    """Position of this change in the fact's history, from 1 (its ADD)."""
    event: MemoryEvent
    """What happened: `ADD`, `UPDATE` or `DELETE`."""
    time: datetime
    """When it happened (UTC)."""
    old_text: str | None = None
    """The text before the change; None for an ADD."""
    new_text: str | None = None
    """The text after the change; None for a DELETE."""
    source_message_ids: tuple[str, ...] = ()
    """Ids of the messages the change was learned from (the batch given to `remember`, or the
    turn `invoked` saw); empty for a change made through `delete` or `clear`."""
    session_id: str | None = None
    """The session those messages belong to, when known."""


class RememberResult(BaseModel):
    """What one `VectorMemory.remember` call learned and changed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    facts: tuple[str, ...] = ()
    """The facts extracted from the messages."""
    changes: tuple[MemoryVersion, ...] = ()
    """The changes made, in order, as recorded in each fact's history."""
    unchanged: int = Field(default=0, ge=0)
    """Facts that changed nothing: already known (exact or near duplicates) or NONE."""
    rejected: int = Field(default=0, ge=0)
    """Decisions refused (logged as warnings): an id not in the request, a memory changed
    twice, a DELETE of a memory that repeats one of the new facts, a change of a memory gone
    meanwhile, or decisions beyond one per new fact and listed memory."""
    malformed: int = Field(default=0, ge=0)
    """Model replies that stayed unusable after their retries, so their step was skipped."""
    usage: Usage = Usage()
    """Tokens this call's model calls took."""


class ExtractionStats(BaseModel):
    """Counters of a memory's background extraction (`VectorMemory.extraction_stats`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queued: int = 0
    """Batches handed to the queue by `invoked`."""
    pending: int = 0
    """Batches waiting or being processed now."""
    completed: int = 0
    """Batches processed (whatever they changed)."""
    retries: int = 0
    """Attempts repeated after a failure (a model or store error)."""
    failed: int = 0
    """Batches given up after their retry budget, or lost to an event loop that ended without
    `flush()`/`aclose()`; each is logged at ERROR with its message ids."""
