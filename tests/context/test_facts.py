"""Fact extraction and consolidation on `VectorMemory`: duplicates, changes, history, scopes."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memweave.context import FactExtractor, VectorMemory
from memweave.errors import ConfigurationError, InvalidArgument
from memweave.llm import Usage
from memweave.messages import ChatMessage
from memweave.session import Session
from tests.context._facts_scripts import FactModel, Memory, by_text
from tests.context.conftest import HashEmbeddings

MakeMemory = Callable[..., VectorMemory]


def remembering(make_memory: MakeMemory, model: FactModel, **options: Any) -> VectorMemory:
    return make_memory(extractor=FactExtractor(model.client, **options))


async def facts_of(
    memory: VectorMemory, *, user_id: str | None = None, session_id: str | None = None
) -> list[str]:
    hits = await memory.search(
        "tea coffee cat lyon",
        user_id=user_id,
        session_id=session_id,
        kind="fact",
        k=100,
        mode="dense",
    )
    return sorted(hit.text for hit in hits)


def says(*texts: str) -> list[ChatMessage]:
    return [ChatMessage.user(text) for text in texts]


async def test_remember_same_fact_twice_stores_one_memory(make_memory: MakeMemory) -> None:
    """Adding a fact the scope already holds stores nothing and asks the model nothing."""
    model = FactModel()
    memory = remembering(make_memory, model)
    first = await memory.remember(says("Likes green tea."), user_id="ada")
    again = await memory.remember(says("likes  GREEN tea"), user_id="ada")
    assert [change.event for change in first.changes] == ["ADD"]
    assert again.changes == ()
    assert again.unchanged == 1
    assert await memory.count_memories(user_id="ada", kind="fact") == 1
    assert len(model.shown) == 1


async def test_remember_near_duplicate_is_a_no_op(make_memory: MakeMemory) -> None:
    """A fact whose embedding is within `duplicate_threshold` of a stored one changes nothing
    and never reaches the model."""
    model = FactModel()
    memory = remembering(make_memory, model, duplicate_threshold=0.95)
    await memory.remember(says("Likes green tea."), user_id="ada")
    # The test embedder is a bag of words: the same words in another order are one vector.
    result = await memory.remember(says("Green tea, likes!"), user_id="ada")
    assert result.changes == ()
    assert result.unchanged == 1
    assert len(model.shown) == 1
    assert await facts_of(memory, user_id="ada") == ["Likes green tea."]


async def test_remember_restated_fact_is_never_deleted(make_memory: MakeMemory) -> None:
    """A DELETE of a stored fact that the messages state again is refused (mem0 #1674)."""

    def delete_everything(existing: list[Memory], facts: list[str]) -> list[dict[str, Any]]:
        return [{"event": "DELETE", "id": memory["id"]} for memory in existing]

    model = FactModel()
    memory = remembering(make_memory, model)
    await memory.remember(says("Likes green tea."), user_id="ada")
    model.decide = delete_everything
    result = await memory.remember(says("Likes green tea.", "Likes tea with milk."), user_id="ada")
    assert result.rejected == 1
    assert result.changes == ()
    assert await facts_of(memory, user_id="ada") == ["Likes green tea."]


async def test_remember_add_of_a_stored_text_is_a_no_op(make_memory: MakeMemory) -> None:
    """An ADD whose text the scope already holds (in other case or spacing) changes nothing."""
    model = FactModel()
    memory = remembering(make_memory, model)
    await memory.remember(says("Lives in Lyon."), user_id="ada")
    model.decide = lambda existing, facts: [{"event": "ADD", "text": "lives in LYON"}]
    result = await memory.remember(says("Has a flat in Lyon."), user_id="ada")
    assert result.changes == ()
    assert result.unchanged == 1
    assert await facts_of(memory, user_id="ada") == ["Lives in Lyon."]


async def test_remember_update_keeps_old_text_in_history(make_memory: MakeMemory) -> None:
    """An UPDATE replaces a fact's text under the same id; its history holds both texts."""
    model = FactModel()
    memory = remembering(make_memory, model)
    added = await memory.remember(says("Drinks tea every morning."), user_id="ada")
    model.decide = lambda existing, facts: [
        {"event": "UPDATE", "id": "0", "text": "Drinks coffee every morning, no more tea."}
    ]
    message = ChatMessage.user("I switched to coffee in the morning.")
    updated = await memory.remember([message], user_id="ada", session_id="s2")
    memory_id = added.changes[0].memory_id
    assert [(c.memory_id, c.event) for c in updated.changes] == [(memory_id, "UPDATE")]
    assert await facts_of(memory, user_id="ada") == ["Drinks coffee every morning, no more tea."]
    history = await memory.history(memory_id, user_id="ada")
    assert [(v.version, v.event, v.old_text, v.new_text) for v in history] == [
        (1, "ADD", None, "Drinks tea every morning."),
        (
            2,
            "UPDATE",
            "Drinks tea every morning.",
            "Drinks coffee every morning, no more tea.",
        ),
    ]
    assert history[1].source_message_ids == (message.id,)
    assert history[1].session_id == "s2"
    assert history[1] == updated.changes[0]


async def test_remember_delete_leaves_search_but_not_history(make_memory: MakeMemory) -> None:
    """A DELETE removes the fact from search and count; its history ends with the DELETE."""
    model = FactModel()
    memory = remembering(make_memory, model)
    added = await memory.remember(says("Has a cat named Tom."), user_id="ada")
    model.decide = lambda existing, facts: [{"event": "DELETE", "id": "0"}]
    deleted = await memory.remember(says("Gave the cat away to a neighbour."), user_id="ada")
    memory_id = added.changes[0].memory_id
    assert [c.event for c in deleted.changes] == ["DELETE"]
    assert await memory.search("cat named Tom", user_id="ada", kind="fact") == []
    assert await memory.count_memories(user_id="ada", kind="fact") == 0
    history = await memory.history(memory_id, user_id="ada")
    assert [(v.event, v.old_text, v.new_text) for v in history] == [
        ("ADD", None, "Has a cat named Tom."),
        ("DELETE", "Has a cat named Tom.", None),
    ]


async def test_remember_consolidates_a_user_across_sessions_only(
    make_memory: MakeMemory,
) -> None:
    """A contradiction in a user's second session updates the fact of the first; another user's
    facts are never shown to the model nor changed."""

    def prefer_coffee(existing: list[Memory], facts: list[str]) -> list[dict[str, Any]]:
        if facts == ["Prefers coffee to tea now."]:
            return [{"event": "UPDATE", "id": by_text(existing, "Likes tea."), "text": facts[0]}]
        return [{"event": "ADD", "text": fact} for fact in facts]

    model = FactModel(decide=prefer_coffee)
    memory = remembering(make_memory, model)
    ada = await memory.remember(says("Likes tea."), user_id="ada", session_id="monday")
    bob = await memory.remember(says("Likes tea."), user_id="bob", session_id="monday")
    await memory.remember(says("Prefers coffee to tea now."), user_id="ada", session_id="friday")
    assert model.shown[-1][0] == [{"id": "0", "text": "Likes tea."}]
    assert await facts_of(memory, user_id="ada") == ["Prefers coffee to tea now."]
    assert await facts_of(memory, user_id="bob") == ["Likes tea."]
    bob_history = await memory.history(bob.changes[0].memory_id, user_id="bob")
    assert [v.event for v in bob_history] == ["ADD"]
    ada_history = await memory.history(ada.changes[0].memory_id, user_id="ada")
    assert [v.event for v in ada_history] == ["ADD", "UPDATE"]
    assert await memory.history(ada.changes[0].memory_id, user_id="bob") == []


async def test_remember_rejects_ids_it_did_not_list(
    make_memory: MakeMemory, caplog: pytest.LogCaptureFixture
) -> None:
    """A decision naming an id the request did not list (invented, or a real memory id) is
    refused and changes nothing."""
    model = FactModel()
    memory = remembering(make_memory, model)
    added = await memory.remember(says("Likes tea."), user_id="ada")
    real_id = added.changes[0].memory_id
    model.decide = lambda existing, facts: [
        {"event": "UPDATE", "id": "7", "text": "Hates tea."},
        {"event": "DELETE", "id": real_id},
        {"event": "DELETE", "id": "0 OR 1=1"},
    ]
    with caplog.at_level(logging.WARNING, logger="memweave.context.facts"):
        result = await memory.remember(says("Drinks only water."), user_id="ada")
    assert result.rejected == 3
    assert result.changes == ()
    assert await facts_of(memory, user_id="ada") == ["Likes tea."]
    assert "not listed" in caplog.text


async def test_remember_changes_a_memory_at_most_once(make_memory: MakeMemory) -> None:
    """A second decision about a memory already changed in the same call is refused."""
    model = FactModel()
    memory = remembering(make_memory, model)
    await memory.remember(says("Likes tea."), user_id="ada")
    model.decide = lambda existing, facts: [
        {"event": "UPDATE", "id": "0", "text": "Likes black tea."},
        {"event": "DELETE", "id": "0"},
    ]
    result = await memory.remember(says("Only black tea."), user_id="ada")
    assert [c.event for c in result.changes] == ["UPDATE"]
    assert result.rejected == 1
    assert await facts_of(memory, user_id="ada") == ["Likes black tea."]


async def test_search_kind_selects_turns_facts_or_both(make_memory: MakeMemory) -> None:
    """`kind="turn"` finds turns, `kind="fact"` facts, and None both, each hit with its kind."""
    memory = remembering(make_memory, FactModel())
    await memory.add("we talked about tea in Lyon", user_id="ada")
    await memory.remember(says("Lives in Lyon."), user_id="ada")
    both = await memory.search("Lyon", user_id="ada", k=10)
    assert sorted((hit.kind, hit.text) for hit in both) == [
        ("fact", "Lives in Lyon."),
        ("turn", "we talked about tea in Lyon"),
    ]
    assert [h.kind for h in await memory.search("Lyon", user_id="ada", kind="turn")] == ["turn"]
    assert [h.kind for h in await memory.search("Lyon", user_id="ada", kind="fact")] == ["fact"]
    assert await memory.count_memories(user_id="ada") == 2
    assert await memory.count_memories(user_id="ada", kind="fact") == 1
    with pytest.raises(InvalidArgument):
        await memory.search("Lyon", user_id="ada", kind="facts")  # type: ignore[arg-type]


async def test_delete_and_clear_of_facts_record_history(make_memory: MakeMemory) -> None:
    """Deleting a fact through `delete` or `clear` records a DELETE; `clear(kind="fact")`
    leaves the turns."""
    memory = remembering(make_memory, FactModel())
    await memory.add("a turn about tea", user_id="ada")
    result = await memory.remember(says("Likes tea.", "Has a cat."), user_id="ada")
    first, second = (change.memory_id for change in result.changes)
    assert await memory.delete(first, user_id="ada") is True
    assert await memory.delete(first, user_id="ada") is False
    assert await memory.clear(user_id="ada", kind="fact") == 1
    assert await memory.count_memories(user_id="ada") == 1
    for memory_id in (first, second):
        history = await memory.history(memory_id, user_id="ada")
        assert [v.event for v in history] == ["ADD", "DELETE"]
        assert history[1].source_message_ids == ()


async def test_remember_makes_a_confirmed_fact_visible_from_the_new_session(
    make_memory: MakeMemory,
) -> None:
    """A fact is visible from the sessions it was learned or stated again in, and stays one
    memory of the user."""
    memory = remembering(make_memory, FactModel())
    await memory.remember(says("Likes tea."), user_id="ada", session_id="s1")
    assert await facts_of(memory, user_id="ada", session_id="s2") == []
    await memory.remember(says("Likes tea."), user_id="ada", session_id="s2")
    for session in ("s1", "s2"):
        assert await facts_of(memory, user_id="ada", session_id=session) == ["Likes tea."]
    assert await memory.count_memories(user_id="ada", kind="fact") == 1


async def test_remember_without_a_user_scopes_facts_to_the_session(
    make_memory: MakeMemory,
) -> None:
    """Facts remembered with only a session id are read by that session id alone."""
    memory = remembering(make_memory, FactModel())
    await memory.remember(says("Likes tea."), session_id="guest")
    assert await facts_of(memory, session_id="guest") == ["Likes tea."]
    assert await facts_of(memory, user_id="guest") == []
    with pytest.raises(InvalidArgument, match="user_id or session_id"):
        await memory.remember(says("Likes tea."))


async def test_remember_needs_an_extractor(make_memory: MakeMemory) -> None:
    """`remember` on a memory without an extractor raises `ConfigurationError`."""
    memory = make_memory()
    with pytest.raises(ConfigurationError, match="FactExtractor"):
        await memory.remember(says("Likes tea."), user_id="ada")


async def test_remember_reports_tokens_per_call_and_in_total(make_memory: MakeMemory) -> None:
    """Each result reports its calls' tokens; the extractor sums every call's."""
    model = FactModel(usage=Usage(prompt_tokens=10, completion_tokens=2))
    extractor = FactExtractor(model.client)
    memory = make_memory(extractor=extractor)
    first = await memory.remember(says("Likes tea."), user_id="ada")
    second = await memory.remember(says("Likes tea."), user_id="ada")
    assert first.usage == Usage(prompt_tokens=20, completion_tokens=4)
    assert second.usage == Usage(prompt_tokens=10, completion_tokens=2)
    assert extractor.usage == Usage(prompt_tokens=30, completion_tokens=6)


async def test_invoking_injects_facts_unless_told_turns_only(make_memory: MakeMemory) -> None:
    """`invoking` injects facts beside turns by default, and only turns with
    `inject_kind="turn"`."""
    session = Session(user_id="ada")
    question = [ChatMessage.user("Where does Ada live, Lyon?")]
    both = make_memory(extractor=FactExtractor(FactModel().client), min_score=0.0)
    await both.remember(says("Lives in Lyon."), user_id="ada")
    context = await both.invoking(session, question)
    assert context.instructions is not None
    assert "Lives in Lyon." in context.instructions
    await both.aclose()
    turns = make_memory(inject_kind="turn", min_score=0.0)
    assert (await turns.invoking(session, question)).instructions is None


async def test_history_survives_reopening(tmp_path: Path, hash_embedder: HashEmbeddings) -> None:
    """History is kept durably in Chroma: a memory reopened on the folder reads it."""
    model = FactModel()
    async with VectorMemory(
        tmp_path / "m", embedder=hash_embedder, extractor=FactExtractor(model.client)
    ) as memory:
        added = await memory.remember(says("Likes tea."), user_id="ada")
    async with VectorMemory(tmp_path / "m", embedder=hash_embedder) as reopened:
        history = await reopened.history(added.changes[0].memory_id, user_id="ada")
        assert history == list(added.changes)
        assert await facts_of(reopened, user_id="ada") == ["Likes tea."]


def test_readme_quickstart_runs_offline(tmp_path: Path) -> None:
    """The README's fact-extraction quickstart runs as written and prints the updated fact."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Memory that learns: fact extraction") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        "Lives in Paris, moved from Lyon.",
        "1 ADD None -> Lives in Lyon.",
        "2 UPDATE Lives in Lyon. -> Lives in Paris, moved from Lyon.",
    ]


async def test_remember_refuses_decisions_beyond_what_was_asked(make_memory: MakeMemory) -> None:
    """A reply with more decisions than new facts and listed memories is cut to that many."""
    model = FactModel()
    memory = make_memory(extractor=FactExtractor(model.client))
    model.decide = lambda existing, facts: [
        {"event": "ADD", "text": f"Has {n} cats."} for n in range(1, 40)
    ]
    result = await memory.remember(says("Has cats."), user_id="ada")
    assert [change.new_text for change in result.changes] == ["Has 1 cats."]
    assert result.rejected == 38
