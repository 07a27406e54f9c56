"""A scripted Agent Framework chat client and the agent the Agent Framework tests run.

Shared by the tests and by `_af_resume.py`, which continues a conversation in a new process.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    ContextProvider,
    FunctionInvocationLayer,
    FunctionTool,
    Message,
    ResponseStream,
)
from agent_framework.observability import ChatTelemetryLayer

from memweave.integrations.agent_framework import messages_from_memweave, messages_to_memweave
from memweave.messages import ChatMessage, ToolCall
from memweave.testing import Reply, ReplyFunction, ScriptedChatClient

WEATHER_CALL = ChatMessage.assistant(
    tool_calls=[ToolCall(id="call-1", name="get_weather", arguments='{"city": "Paris"}')]
)


def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


class ScriptedAFChatClient(
    FunctionInvocationLayer[Any],
    ChatMiddlewareLayer[Any],
    ChatTelemetryLayer[Any],
    BaseChatClient[Any],
):
    """An Agent Framework chat client that answers from a memweave `ScriptedChatClient`.

    Requests are converted to memweave messages (instructions first, as a system message) and
    recorded by `scripted`; replies come back as AF messages without a `message_id`, as many
    real clients send them, whole or streamed in pieces.
    """

    __test__ = False

    def __init__(self, replies: Sequence[Reply] | ReplyFunction) -> None:
        super().__init__()
        self.scripted = ScriptedChatClient(replies)

    def _inner_get_response(
        self,
        *,
        messages: Sequence[Message],
        stream: bool,
        options: Mapping[str, Any],
        **kwargs: Any,
    ) -> Awaitable[ChatResponse[Any]] | ResponseStream[ChatResponseUpdate, ChatResponse[Any]]:
        if stream:
            return self._build_response_stream(self._stream(messages, options))
        return self._respond(messages, options)

    async def _stream(
        self, messages: Sequence[Message], options: Mapping[str, Any]
    ) -> AsyncIterator[ChatResponseUpdate]:
        """Send the scripted reply as one update per content, text split in two."""
        [message] = (await self._respond(messages, options)).messages
        for content in message.contents:
            if content.type == "text" and content.text:
                half = len(content.text) // 2
                for piece in (content.text[:half], content.text[half:]):
                    yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(piece)])
            else:
                yield ChatResponseUpdate(role="assistant", contents=[content])

    async def _respond(
        self, messages: Sequence[Message], options: Mapping[str, Any]
    ) -> ChatResponse[Any]:
        # Copies, so the ids conversion assigns never reach the agent's own messages.
        sent = messages_to_memweave([copy.copy(message) for message in messages])
        instructions = options.get("instructions")
        if instructions:
            sent.insert(0, ChatMessage.system(str(instructions)))
        tools = [
            tool.to_json_schema_spec() if isinstance(tool, FunctionTool) else tool
            for tool in options.get("tools") or ()
        ]
        reply = await self.scripted.complete(sent, tools=tools or None)
        [message] = messages_from_memweave([reply.message])
        message.message_id = None
        return ChatResponse(messages=[message])


def make_agent(client: ScriptedAFChatClient, providers: Sequence[ContextProvider]) -> Agent[Any]:
    """The agent under test: brief instructions, one tool, the given context providers."""
    return Agent(
        client,
        "Be brief.",
        name="helper",
        tools=[get_weather],
        context_providers=list(providers),
    )


__all__ = ["WEATHER_CALL", "ScriptedAFChatClient", "get_weather", "make_agent"]
