"""A handoff workflow run in separate OS processes: `python -m tests.orchestration._workers`.

`start` runs the workflow until it waits for a tool approval and exits; `finish`, in a fresh
process, builds the same workflow, approves the pending request and runs it to the end. Each
prints a JSON report on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    Agent,
    HandoffBuilder,
    ToolApprovalRequest,
    UserInputRequest,
    checkpoint_store_from_url,
    tool,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

WORKFLOW = "support"


@tool(approval="always")
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount:.2f} for order {order_id}"


def triage_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage:
    call = ToolCall(
        id="call_handoff",
        name="handoff_to_refunds",
        arguments=json.dumps({"reason": "damaged item", "task": "refund order 7"}),
    )
    return ChatMessage.assistant("Let me get the refunds team.", tool_calls=[call])


def refunds_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    last = messages[-1]
    if last.role == "tool":
        return f"Done: {last.text}."
    if last.role == "system":
        call = ToolCall(
            id="call_refund",
            name="issue_refund",
            arguments=json.dumps({"order_id": "7", "amount": 19.5}),
        )
        return ChatMessage.assistant(tool_calls=[call])
    return "Anything else?"


def build(history_url: str, checkpoint_url: str, prefix: str) -> tuple[Any, ScriptedChatClient]:
    options = {"namespace": prefix} if history_url.startswith("redis") else {}
    history = from_url(history_url, **options)
    store = checkpoint_store_from_url(checkpoint_url, **options)
    refunds_client = ScriptedChatClient(refunds_model)
    triage = Agent("triage", ScriptedChatClient(triage_model))
    refunds = Agent("refunds", refunds_client, tools=[issue_refund])
    workflow = (
        HandoffBuilder(WORKFLOW, [triage, refunds], history=history)
        .add_handoff(triage, refunds)
        .with_checkpointing(store)
        .build()
    )
    return workflow, refunds_client


async def start(
    history_url: str, checkpoint_url: str, session_id: str, prefix: str
) -> dict[str, Any]:
    workflow, _ = build(history_url, checkpoint_url, prefix)
    try:
        events = [e async for e in workflow.run("My order 7 arrived broken.", session=session_id)]
    finally:
        await workflow.history.aclose()
        await workflow.checkpoints.aclose()
    return {"events": [type(e).__name__ for e in events]}


async def finish(
    history_url: str, checkpoint_url: str, session_id: str, prefix: str
) -> dict[str, Any]:
    workflow, refunds_client = build(history_url, checkpoint_url, prefix)
    try:
        (request,) = await workflow.pending_requests(session=session_id)
        assert isinstance(request, ToolApprovalRequest)
        events = [
            e
            async for e in workflow.run(
                responses={request.request_id: request.approve()}, session=session_id
            )
        ]
        ask = events[-1]
        assert isinstance(ask, UserInputRequest)
        done = [
            e
            async for e in workflow.run(
                responses={ask.request_id: ask.terminate()}, session=session_id
            )
        ]
        conversation = await workflow.history.list_messages(session_id)
    finally:
        await workflow.history.aclose()
        await workflow.checkpoints.aclose()
    return {
        "approved": request.tool_call.name,
        "events": [type(e).__name__ for e in [*events, *done]],
        "refunds_saw": [[m.role, m.text] for m in refunds_client.requests[0].messages],
        "conversation": [[m.role, m.text] for m in conversation],
    }


def main(argv: list[str]) -> None:
    phase, history_url, checkpoint_url, session_id, prefix = argv
    runner = start if phase == "start" else finish
    print(json.dumps(asyncio.run(runner(history_url, checkpoint_url, session_id, prefix))))


if __name__ == "__main__":
    main(sys.argv[1:])
