"""The examples in `examples/` run end to end offline, on the scripted model each one carries
(`--scripted`), as they would on a server."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from memweave.orchestration import (
    SUB_SESSION_KEY,
    AgentMessage,
    Handoff,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

WITH_SCRIPTED_MODE = [
    "sequential_chats",
    "tutor_routing",
    "support_handoff",
    "agent_as_tool",
    "supervisor",
    "hierarchical_teams",
    "swarm",
]


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


def scripted(example: ModuleType) -> ScriptedChatClient:
    client = example.scripted_client()
    assert isinstance(client, ScriptedChatClient)
    return client


def handoffs(events: list[WorkflowEvent]) -> list[tuple[str, str, bool]]:
    return [(e.source, e.target, e.automatic) for e in events if isinstance(e, Handoff)]


def requests_of(client: ScriptedChatClient, instructions: str) -> list[list[str]]:
    """The texts of each request one agent (known by its instructions) sent."""
    return [
        [m.text for m in r.messages] for r in client.requests if r.messages[0].text == instructions
    ]


async def test_sequential_chats_example(tmp_path: Path) -> None:
    """The number processor's summary reaches the analyzer as marked carryover."""
    example = load("sequential_chats")
    client = scripted(example)
    results = await example.amain(client, db_path=str(tmp_path / "chats.db"))
    assert results[0].summary == "Doubled: [28, 6, 16, 42], sum 92."
    assert results[1].carryover == (
        "The numbers are this week's daily sign-ups.",
        "Doubled: [28, 6, 16, 42], sum 92.",
    )
    assert results[1].summary == "Day four stood out."
    (analyzer,) = requests_of(client, example.ANALYZER)
    assert "<carryover>" in analyzer[-1]
    assert "sum 92" in analyzer[-1]


async def test_tutor_routing_example() -> None:
    """Triage routes each question to the right tutor, through the allowed routes."""
    example = load("tutor_routing")
    events = await example.amain(scripted(example))
    assert [(source, target) for source, target, _ in handoffs(events)] == [
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
    events = await example.amain(scripted(example), db_path=str(tmp_path / "support.db"))
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("ToolApprovalRequest") < kinds.index("UserInputRequest")
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "termination_condition"
    texts = [m.text for m in output.conversation]
    assert "Refund of $199.00 for order 1234 issued (cracked screen)." in texts
    assert texts.count("Hi, order 1234 arrived with a cracked screen. I'd like my money back.") == 1


async def test_agent_as_tool_example(tmp_path: Path) -> None:
    """The planner calls both workers in one reply and writes its plan from their answers;
    each worker's turn is stored in a sub-session linked from its tool result."""
    example = load("agent_as_tool")
    client = scripted(example)
    db_path = str(tmp_path / "trip.db")
    response = await example.amain(client, db_path=db_path)
    assert "22 °C by day" in response.text
    assert "About 1,700 EUR" in response.text
    _, second = requests_of(client, example.PLANNER)
    assert second[-2:] == [
        "Lisbon in May: 22 °C by day, 14 °C at night, mostly sunny, little rain.",
        "About 1,700 EUR for two: 900 hotel, 500 food, 300 transport and tickets.",
    ]
    async with from_url(f"sqlite+aiosqlite:///{db_path}") as history:
        stored = await history.list_messages("trip-1")
        links = [str(m.metadata[SUB_SESSION_KEY]) for m in stored if SUB_SESSION_KEY in m.metadata]
        researcher = await history.list_messages(links[0])
    assert [m.role for m in researcher] == ["user", "assistant", "tool", "assistant"]
    assert researcher[0].text == "What is the weather in Lisbon in May?"


async def test_supervisor_example(tmp_path: Path) -> None:
    """The supervisor gives the researcher two tasks and the mathematician one in one user
    turn; each worker returns by itself, and the supervisor ends the run."""
    example = load("supervisor")
    events = await example.amain(scripted(example), db_path=str(tmp_path / "cities.db"))
    assert handoffs(events) == [
        ("supervisor", "researcher", False),
        ("researcher", "supervisor", True),
        ("supervisor", "mathematician", False),
        ("mathematician", "supervisor", True),
        ("supervisor", "researcher", False),
        ("researcher", "supervisor", True),
    ]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ended"
    assert output.answer == "About 777,723 people live in the two cities; Lisbon is the capital."
    said = [e.text for e in events if isinstance(e, AgentMessage) and e.agent == "mathematician"]
    assert said[-1] == "The sum is 777723."


async def test_hierarchical_teams_example(tmp_path: Path) -> None:
    """The chief's teams work in their own sub-sessions; the writing team gets the research
    team's answer as its task, and the chief ends with the editor's text."""
    example = load("hierarchical_teams")
    events = await example.amain(scripted(example), db_path=str(tmp_path / "newsroom.db"))
    spoke = [(e.team, e.agent) for e in events if isinstance(e, AgentMessage) and e.text]
    assert ((), "research_team") in spoke
    assert (("research_team",), "searcher") in spoke
    assert (("writing_team",), "editor") in spoke
    tasks = {e.target: e.task for e in events if isinstance(e, Handoff) and not e.team}
    assert tasks["writing_team"].endswith(example.ANSWERS[example.SEARCHER])
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert (output.reason, output.answer) == ("ended", example.ANSWERS[example.EDITOR])


async def test_swarm_example(tmp_path: Path) -> None:
    """The advisors hand the traveller to each other with trip updates, the hotel advisor
    waits for the traveller, and the travel advisor ends the run; the trip is stored."""
    example = load("swarm")
    events = await example.amain(scripted(example), db_path=str(tmp_path / "trip.db"))
    assert handoffs(events) == [
        ("travel_advisor", "hotel_advisor", False),
        ("hotel_advisor", "travel_advisor", False),
    ]
    waits = [e.agent for e in events if isinstance(e, UserInputRequest)]
    assert waits == ["hotel_advisor"]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ended"
    assert output.state == {
        "destination": "Aruba",
        "interests": ["snorkeling"],
        "hotel": "Boardwalk Hotel",
    }


@pytest.mark.parametrize(
    ("name", "last_line"),
    [
        ("sequential_chats", "summary: Day four stood out."),
        ("tutor_routing", "[run ended: the user ended the run]"),
        (
            "support_handoff",
            "[run ended: termination_condition: the termination condition was met]",
        ),
        ("agent_as_tool", "accountant~"),
        ("supervisor", "answer (ended): About 777,723 people"),
        ("hierarchical_teams", "writing_team's answer links 'note-1/writing_team'"),
        ("swarm", "stored trip: Trip(destination='Aruba'"),
    ],
)
def test_example_runs_offline_with_scripted(name: str, last_line: str, tmp_path: Path) -> None:
    """`python examples/<name>.py --scripted` runs the whole example with no model server."""
    command = [sys.executable, str(EXAMPLES / f"{name}.py"), "--scripted"]
    if name != "tutor_routing":
        command += ["--db", str(tmp_path / "example.db")]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].strip().startswith(last_line)


@pytest.mark.parametrize("name", WITH_SCRIPTED_MODE)
def test_example_main_runs_with_the_configured_client(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without `--scripted`, `main()` runs the example with the client `make_client()`
    returns."""
    example = load(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(example, "make_client", example.scripted_client)
    example.main([])
    assert capsys.readouterr().out.strip()


def test_make_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples' client comes from OPENAI_BASE_URL, OPENAI_API_KEY and MEMWEAVE_MODEL."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("MEMWEAVE_MODEL", "local-model")
    for name in WITH_SCRIPTED_MODE:
        client = load(name).make_client()
        assert client.model == "local-model"
        assert client.base_url == "http://127.0.0.1:9/v1/"


def test_langgraph_handoff_example_resumes_in_a_new_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The LangGraph handoff graph resumes from memweave in a second process and recalls."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'trip.db'}"
    load("langgraph_handoff").main(["--url", url])
    out = capfd.readouterr().out
    first, _, second = out.partition("--- this process stops")
    assert "travel_advisor: Aruba" in first
    assert "[waiting at: ['human']]" in first
    assert "hotel_advisor: Book the Boardwalk Hotel" in second
    assert "I love snorkeling" in second.split("hotel_advisor recalled:")[1]


def test_agent_framework_handoff_example_resumes_in_a_new_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """AF's HandoffBuilder pauses on a refund approval and finishes in a second process."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'support.db'}"
    load("agent_framework_handoff_checkpoints").main(["--url", url, "--offline"])
    out = capfd.readouterr().out
    first, _, second = out.partition("--- this process stops")
    assert "[approval needed: process_refund" in first
    assert "Refund processed successfully for order 12345" not in first
    assert "refund_agent: Refund processed successfully for order 12345" in second
    assert second.rstrip().endswith("[workflow idle]")
