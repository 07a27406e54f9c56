"""The examples in `examples/` run end to end on a scripted model, as they would on a server."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import Handoff, WorkflowOutput
from memweave.orchestration.sequential import DEFAULT_SUMMARY_PROMPT
from memweave.testing import ScriptedChatClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"memweave_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tool_call(name: str, **arguments: Any) -> ChatMessage:
    call = ToolCall(
        id=f"call_{name}_{len(json.dumps(arguments))}", name=name, arguments=json.dumps(arguments)
    )
    return ChatMessage.assistant(tool_calls=[call])


def system_of(messages: list[ChatMessage]) -> str:
    return messages[0].text if messages and messages[0].role == "system" else ""


def sequential_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Plays every agent of `sequential_chats.py`."""
    system, last = system_of(messages), messages[-1]
    if system.startswith("You are the number processor"):
        if last.role == "tool":
            data = json.loads(last.text)
            return f"Doubled: {data['doubled']}, sum {data['sum']}. TERMINATE"
        return tool_call("process_numbers", numbers=[14, 3, 8, 21])
    if system.startswith("You are the result analyzer"):
        return "Sign-ups doubled to 92 in total; day four stands out. TERMINATE"
    if system.startswith("You are the user proxy"):
        return "Day four stood out." if last.text == DEFAULT_SUMMARY_PROMPT else "Thanks."
    raise AssertionError(f"unexpected request: {system!r}")


def tutor_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Plays every agent of `tutor_routing.py`."""
    system = system_of(messages)
    question = [m.text for m in messages if m.role == "user"][-1]
    is_math = "derivative" in question
    if system.startswith("You are the triage agent"):
        target = "math_tutor" if is_math else "history_tutor"
        return tool_call(f"handoff_to_{target}", reason="homework question", task=question)
    if system.startswith("You are the math tutor"):
        if is_math:
            return "d/dx (x^3 + 2x) = 3x^2 + 2."
        return tool_call("handoff_to_triage", reason="not a math question")
    if system.startswith("You are the history tutor"):
        return "Augustus became the first Roman emperor in 27 BC."
    raise AssertionError(f"unexpected request: {system!r}")


def support_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Plays every agent of `support_handoff.py`."""
    system, last = system_of(messages), messages[-1]
    if system.startswith("You are the triage agent"):
        return tool_call("handoff_to_refund_agent", reason="damaged item", task="refund order 1234")
    if system.startswith("You are the refund agent"):
        if last.role == "system":
            return tool_call("lookup_order", order_id="1234")
        if last.role == "tool" and "tablet" in last.text:
            return tool_call("issue_refund", order_id="1234", amount=199.0, reason="cracked screen")
        if last.role == "tool":
            return "Your refund of $199.00 is on its way. Anything else?"
        return "You're welcome! CASE CLOSED"
    raise AssertionError(f"unexpected request: {system!r}")


async def test_sequential_chats_example(tmp_path: Path) -> None:
    """The number processor's summary reaches the analyzer as marked carryover."""
    example = load("sequential_chats")
    client = ScriptedChatClient(sequential_model)
    results = await example.amain(client, db_path=str(tmp_path / "chats.db"))
    assert results[0].summary == "Doubled: [28, 6, 16, 42], sum 92."
    assert results[1].carryover == (
        "The numbers are this week's daily sign-ups.",
        "Doubled: [28, 6, 16, 42], sum 92.",
    )
    assert results[1].summary == "Day four stood out."
    analyzer = next(
        r for r in client.requests if system_of(list(r.messages)).startswith("You are the result")
    )
    assert "<carryover>" in analyzer.messages[-1].text
    assert "sum 92" in analyzer.messages[-1].text


async def test_tutor_routing_example() -> None:
    """Triage routes each question to the right tutor, through the allowed routes."""
    example = load("tutor_routing")
    events = await example.amain(ScriptedChatClient(tutor_model))
    routes = [(e.source, e.target) for e in events if isinstance(e, Handoff)]
    assert routes == [
        ("triage", "math_tutor"),
        ("math_tutor", "triage"),
        ("triage", "history_tutor"),
    ]
    assert isinstance(events[-1], WorkflowOutput)
    assert events[-1].reason == "user_terminated"
    answers = [m.text for m in events[-1].conversation if m.role == "assistant" and m.text]
    assert answers == [
        "d/dx (x^3 + 2x) = 3x^2 + 2.",
        "Augustus became the first Roman emperor in 27 BC.",
    ]


async def test_support_handoff_example(tmp_path: Path) -> None:
    """The refund waits for approval, resumes in a new workflow, and the case closes."""
    example = load("support_handoff")
    events = await example.amain(
        ScriptedChatClient(support_model), db_path=str(tmp_path / "support.db")
    )
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("ToolApprovalRequest") < kinds.index("UserInputRequest")
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "termination_condition"
    texts = [m.text for m in output.conversation]
    assert "Refund of $199.00 for order 1234 issued (cracked screen)." in texts
    assert texts.count("Hi, order 1234 arrived with a cracked screen. I'd like my money back.") == 1


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("sequential_chats", sequential_model),
        ("tutor_routing", tutor_model),
        ("support_handoff", support_model),
    ],
)
def test_examples_main_runs_with_the_configured_client(
    name: str,
    model: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`main()` runs the whole example with the client `make_client()` returns."""
    example = load(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(example, "make_client", lambda: ScriptedChatClient(model))
    example.main()
    assert capsys.readouterr().out.strip()


def test_make_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples' client comes from OPENAI_BASE_URL, OPENAI_API_KEY and MEMWEAVE_MODEL."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("MEMWEAVE_MODEL", "local-model")
    for name in ("sequential_chats", "tutor_routing", "support_handoff"):
        client = load(name).make_client()
        assert client.model == "local-model"
        assert client.base_url == "http://127.0.0.1:9/v1/"
