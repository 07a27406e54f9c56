"""A handoff workflow paused in one OS process finishes in another, from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.orchestration._builders import redis_prefix_cleanup

ROOT = Path(__file__).resolve().parents[2]


def run_phase(
    phase: str, history_url: str, checkpoint_url: str, session_id: str, prefix: str
) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.orchestration._workers",
            phase,
            history_url,
            checkpoint_url,
            session_id,
            prefix,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_resumed(history_url: str, checkpoint_url: str, prefix: str) -> None:
    session_id = f"resume-{uuid.uuid4().hex}"
    first = run_phase("start", history_url, checkpoint_url, session_id, prefix)
    assert first["events"] == ["AgentMessage", "Handoff", "AgentMessage", "ToolApprovalRequest"]
    second = run_phase("finish", history_url, checkpoint_url, session_id, prefix)
    assert second["approved"] == "issue_refund"
    assert second["events"] == ["AgentMessage", "UserInputRequest", "WorkflowOutput"]
    # The second process's model saw the first process's conversation, from the history.
    saw = second["refunds_saw"]
    assert saw[0] == ["user", "My order 7 arrived broken."]
    assert saw[1] == ["assistant", "Let me get the refunds team."]
    assert saw[-1] == ["tool", "refunded 19.50 for order 7"]
    texts = [text for _, text in second["conversation"]]
    assert texts.count("My order 7 arrived broken.") == 1
    assert texts[-1] == "Done: refunded 19.50 for order 7."


def test_resume_in_another_process_on_sqlite(tmp_path: Path) -> None:
    """Paused at a tool approval in one process, finished in another, on a SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'support.db'}"
    check_resumed(url, url, "unused")


@pytest.mark.xdist_group("redis")
async def test_resume_in_another_process_on_redis(redis_url: str) -> None:
    """Paused at a tool approval in one process, finished in another, on Redis."""
    prefix = f"mwt-{uuid.uuid4().hex[:12]}"
    try:
        check_resumed(redis_url, redis_url, prefix)
    finally:
        await redis_prefix_cleanup(redis_url, prefix)
