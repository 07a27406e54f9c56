"""`Context` and the `ContextProvider` base class."""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
import pytest

from memweave.context import Context, ContextProvider
from memweave.messages import ChatMessage
from memweave.session import Session


class EchoProvider(ContextProvider):
    """Adds the newest message's text as instructions."""

    source_id = "echo"

    def __init__(self) -> None:
        self.closed = 0

    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        return Context(instructions=messages[-1].text if messages else None)

    async def aclose(self) -> None:
        self.closed += 1


def test_context_is_empty_by_default() -> None:
    """A default Context adds nothing."""
    context = Context()
    assert context.instructions is None
    assert context.messages == ()
    assert context.tools == ()
    assert context.is_empty
    assert not Context(tools=({"type": "function"},)).is_empty


def test_context_is_frozen_and_strict() -> None:
    """Context is immutable and rejects unknown fields."""
    context = Context(instructions="x")
    with pytest.raises(pydantic.ValidationError):
        context.instructions = "y"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Context(extra="no")  # type: ignore[call-arg]


async def test_provider_invoked_defaults_to_doing_nothing() -> None:
    """A provider that only reads inherits a no-op invoked."""
    provider = EchoProvider()
    session = Session(user_id="ada")
    context = await provider.invoking(session, [ChatMessage.user("hi")])
    assert context.instructions == "hi"
    await provider.invoked(session, [ChatMessage.user("hi")], [])


async def test_provider_async_with_binds_and_closes() -> None:
    """`async with provider as p` binds the provider and closes it on exit."""
    provider = EchoProvider()
    async with provider as bound:
        assert bound is provider
    assert provider.closed == 1
