"""Embedding functions: Chroma's default model without the padding, and OpenAI's."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from memweave._onnx import available_cores
from memweave.context import ChromaDefaultEmbeddings, EmbeddingFunction, OpenAIEmbeddings
from memweave.errors import ConfigurationError, InvalidArgument, ModelError, ModelHTTPError
from tests.context.conftest import HashEmbeddings

TEXTS = [
    "Hey Mel! Good to see you! How have you been?",
    "",
    "a",
    "I went to a LGBTQ support group yesterday and it was so powerful.",
    "Ünïcödé façade - naïve café, 東京で会いましょう 🙂",
    "word " * 400,  # longer than the model's 256 tokens: truncated like Chroma does
    "Yes, I play the clarinet! Started when I was young and it's been great.",
] + [f"turn {i} about pottery, camping and painting sunsets" for i in range(5)]


async def test_chroma_default_matches_chroma_stock_vectors(
    real_embedder: ChromaDefaultEmbeddings,
) -> None:
    """ChromaDefaultEmbeddings gives Chroma's own vectors, to within 1e-6."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    ours = np.array(await real_embedder.embed(TEXTS))
    stock = np.array(ONNXMiniLM_L6_V2()(TEXTS))
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - stock).max() < 1e-6


async def test_chroma_default_keeps_input_order(real_embedder: ChromaDefaultEmbeddings) -> None:
    """Vectors come back in input order although inputs are batched by length."""
    batch = await real_embedder.embed(TEXTS)
    singles = [(await real_embedder.embed([text]))[0] for text in TEXTS[:8]]
    assert np.abs(np.array(batch[:8]) - np.array(singles)).max() < 1e-6


async def test_chroma_default_runs_off_the_event_loop(
    real_embedder: ChromaDefaultEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model runs in a worker thread, not on the event loop's thread."""
    threads: list[threading.Thread] = []
    runner = real_embedder._runner
    original = runner.embed

    def spy(texts: list[str]) -> list[list[float]]:
        threads.append(threading.current_thread())
        return original(texts)

    monkeypatch.setattr(runner, "embed", spy)
    await real_embedder.embed(["hello"])
    assert threads
    assert threads[0] is not threading.current_thread()


async def test_chroma_default_embeds_nothing_for_no_texts() -> None:
    """An empty batch returns an empty list without loading the model."""
    assert await ChromaDefaultEmbeddings(model_dir="/nonexistent").embed([]) == []


@pytest.mark.parametrize("texts", ["one string", [1, 2], None])
async def test_chroma_default_rejects_non_text_input(texts: Any) -> None:
    """Input that is not a sequence of str raises InvalidArgument."""
    with pytest.raises(InvalidArgument):
        await ChromaDefaultEmbeddings().embed(texts)


async def test_chroma_default_reports_incomplete_model_dir(tmp_path: Path) -> None:
    """A model folder missing files raises ConfigurationError naming the folder."""
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match=str(tmp_path)):
        await ChromaDefaultEmbeddings(model_dir=tmp_path).embed(["hi"])


def test_chroma_default_rejects_bad_options() -> None:
    """Bad batch sizes and thread counts raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ChromaDefaultEmbeddings(batch_size=0)
    with pytest.raises(ConfigurationError):
        ChromaDefaultEmbeddings(threads=0)
    with pytest.raises(ConfigurationError, match="workers"):
        ChromaDefaultEmbeddings(workers=0)


class _SessionSpy:
    """Wraps an onnxruntime session: records the threads running it, and can make the
    first runs of two threads wait for each other, or make one run fail."""

    def __init__(self, session: Any, *, meet: bool = False, fail_at: int | None = None) -> None:
        self.session = session
        self.threads: set[int] = set()
        self.runs = 0
        self.fail_at = fail_at
        self._count = threading.Lock()
        self._meeting = threading.Barrier(2, timeout=10) if meet else None

    def run(self, *args: Any) -> Any:
        with self._count:
            self.runs += 1
            number = self.runs
            first_here = threading.get_ident() not in self.threads
            self.threads.add(threading.get_ident())
        if self._meeting is not None and first_here and len(self.threads) <= 2:
            self._meeting.wait()  # times out (BrokenBarrierError) unless two run at once
        if number == self.fail_at:
            raise RuntimeError("run failed")
        return self.session.run(*args)


TWO_CORES = pytest.mark.skipif(
    available_cores() < 2, reason="batches run side by side only with two cores or more"
)


@TWO_CORES
async def test_chroma_default_runs_a_calls_batches_side_by_side() -> None:
    """With `workers=2` two batches of one call run at the same time, on two threads, and
    the vectors equal those of one worker bit for bit, in input order."""
    alone = ChromaDefaultEmbeddings(batch_size=2, workers=1)
    expected = await alone.embed(TEXTS)
    together = ChromaDefaultEmbeddings(batch_size=2, workers=2)
    await together.embed(["load the model"])
    spy = _SessionSpy(together._runner._session, meet=True)
    together._runner._session = spy
    assert await together.embed(TEXTS) == expected
    assert len(spy.threads) == 2
    assert spy.runs >= len(TEXTS) // 2


async def test_chroma_default_failing_batch_fails_the_call_and_leaves_the_model_usable() -> None:
    """A run that fails while others run beside it fails the whole call with ModelError
    (no partial result), and the next call works."""
    embedder = ChromaDefaultEmbeddings(batch_size=2, workers=2)
    expected = await embedder.embed(TEXTS)
    session = embedder._runner._session
    embedder._runner._session = _SessionSpy(session, fail_at=3)
    with pytest.raises(ModelError, match="run failed"):
        await embedder.embed(TEXTS)
    embedder._runner._session = session
    assert await embedder.embed(TEXTS) == expected


def test_embedders_satisfy_the_protocol() -> None:
    """The built-in embedders and a user's own class are EmbeddingFunctions."""
    assert isinstance(ChromaDefaultEmbeddings(), EmbeddingFunction)
    assert isinstance(HashEmbeddings(), EmbeddingFunction)
    assert ChromaDefaultEmbeddings().dimensions == 384


class FakeEmbeddingServer:
    """An OpenAI-compatible `/embeddings` endpoint behind httpx.MockTransport."""

    def __init__(self, dimensions: int = 3, *, status: int = 200, shuffle: bool = True) -> None:
        self.dimensions = dimensions
        self.status = status
        self.shuffle = shuffle
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "nope"}})
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text))] * self.dimensions}
            for i, text in enumerate(body["input"])
        ]
        if self.shuffle:
            data.reverse()
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )

    def client(self) -> openai.AsyncOpenAI:
        transport = httpx.MockTransport(self)
        return openai.AsyncOpenAI(
            api_key="test",
            base_url="http://embeddings.test/v1",
            # The SDK types http_client as httpx2's client and accepts httpx's as well.
            http_client=httpx.AsyncClient(transport=transport),  # type: ignore[arg-type]
            max_retries=0,
        )


async def test_openai_embeddings_batches_and_keeps_order() -> None:
    """Texts go out batch_size per request and come back in input order."""
    server = FakeEmbeddingServer()
    embedder = OpenAIEmbeddings("my-model", client=server.client(), dimensions=3, batch_size=2)
    vectors = await embedder.embed(["a", "bb", "ccc", "", "eeeee"])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0, 1.0, 5.0]  # "" is sent as " "
    assert [len(r["input"]) for r in server.requests] == [2, 2, 1]
    assert all("dimensions" not in r for r in server.requests)
    assert embedder.name == "openai/my-model"


async def test_openai_embeddings_sends_dimensions_to_shorten_v3_models() -> None:
    """A smaller `dimensions` for a text-embedding-3 model is sent and named."""
    server = FakeEmbeddingServer(dimensions=256)
    embedder = OpenAIEmbeddings("text-embedding-3-small", client=server.client(), dimensions=256)
    await embedder.embed(["hi"])
    assert server.requests[0]["dimensions"] == 256
    assert embedder.name == "openai/text-embedding-3-small@256"


async def test_openai_embeddings_maps_http_errors() -> None:
    """An error status becomes ModelHTTPError with the code."""
    server = FakeEmbeddingServer(status=401)
    embedder = OpenAIEmbeddings("my-model", client=server.client(), dimensions=3)
    with pytest.raises(ModelHTTPError) as caught:
        await embedder.embed(["hi"])
    assert caught.value.status_code == 401


async def test_openai_embeddings_checks_vector_length() -> None:
    """Vectors of the wrong length raise ModelError instead of being stored."""
    server = FakeEmbeddingServer(dimensions=5)
    embedder = OpenAIEmbeddings("my-model", client=server.client(), dimensions=3)
    with pytest.raises(ModelError, match="5 floats"):
        await embedder.embed(["hi"])


def test_openai_embeddings_needs_dimensions_for_unknown_models() -> None:
    """An unknown model without dimensions raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="dimensions"):
        OpenAIEmbeddings("nomic-embed-text", api_key="x")
    assert OpenAIEmbeddings("text-embedding-3-large", api_key="x").dimensions == 3072


@TWO_CORES
async def test_chroma_default_says_when_its_model_runs_are_under_way() -> None:
    """`wait_until_running(mark)` returns once runs begun after `mark` occupy every worker
    that has a batch (here both), while they are still in the model; with nothing running it
    gives up after `timeout`."""
    embedder = ChromaDefaultEmbeddings(batch_size=2, workers=2)
    await embedder.embed(["load the model"])
    runner = embedder._runner
    mark = embedder.runs_started()
    embedder.wait_until_running(mark, timeout=0.01)  # nothing runs: returns at the timeout
    assert embedder.runs_started() == mark
    release = threading.Event()
    session = runner._session

    class Held:
        def run(self, *args: Any) -> Any:
            release.wait(10)
            return session.run(*args)

    runner._session = Held()
    call = asyncio.ensure_future(embedder.embed(TEXTS))
    try:
        await asyncio.to_thread(embedder.wait_until_running, mark, 10.0)
        assert runner._in_model == 2  # both workers are inside the model, held there
        assert embedder.runs_started() == mark + 2
    finally:
        release.set()
        await call
        runner._session = session


async def test_chroma_default_embedders_share_their_helper_threads() -> None:
    """Every embedder of a process borrows from one pool of helper threads (one fewer than
    the cores), so making embedders does not make threads; `workers` stops at the cores."""
    embedders = [ChromaDefaultEmbeddings(batch_size=2, workers=64) for _ in range(3)]
    for embedder in embedders:
        assert embedder._runner.workers == available_cores()
        await embedder.embed(TEXTS)
    helpers = [t for t in threading.enumerate() if t.name.startswith("memweave-onnx")]
    assert len(helpers) <= max(1, available_cores() - 1)


async def test_embed_parts_yields_each_parts_vectors_in_order() -> None:
    """`embed_parts` yields, part by part and in order (empty parts too), the vectors `embed`
    gives each part, bit for bit."""
    embedder = ChromaDefaultEmbeddings(batch_size=2)
    parts = [TEXTS[:5], [], TEXTS[5:6], TEXTS[6:]]
    expected = [await embedder.embed(part) for part in parts]
    got = [vectors async for vectors in embedder.embed_parts(parts)]
    assert got == expected
    assert [vectors async for vectors in embedder.embed_parts([])] == []


@TWO_CORES
async def test_embed_parts_runs_the_next_part_before_the_last_one_ends() -> None:
    """The batches of all parts form one queue: while the last batch of a part still runs,
    the other worker has started on the next part (no wait at a part's end)."""
    embedder = ChromaDefaultEmbeddings(batch_size=1, workers=2)
    await embedder.embed(["load the model"])
    runner = embedder._runner
    session = runner._session
    release = threading.Event()
    order: list[str] = []

    class HoldFirst:
        def run(self, _names: Any, feeds: dict[str, Any]) -> Any:
            width = int(feeds["input_ids"].shape[1])
            order.append(f"start {width}")
            if not order[1:]:  # the first run (the long part) is held
                release.wait(10)
            elif not release.is_set():
                release.set()  # a run of the next part began while the first was held
            order.append(f"end {width}")
            return session.run(_names, feeds)

    runner._session = HoldFirst()
    try:
        parts = [["word " * 50], ["a", "b"]]
        got = [vectors async for vectors in embedder.embed_parts(parts)]
    finally:
        runner._session = session
    assert got == [await embedder.embed(part) for part in parts]
    assert order.index("start 3") < order.index("end 52")


async def test_embed_parts_closed_early_starts_no_more_runs() -> None:
    """Closing the iterator after the first part stops the model runs not begun yet."""
    embedder = ChromaDefaultEmbeddings(batch_size=1, workers=1)
    await embedder.embed(["load the model"])
    mark = embedder.runs_started()
    parts = [[f"text {n} of part {p}" for n in range(4)] for p in range(10)]
    stream = embedder.embed_parts(parts)
    first = await anext(stream)
    await stream.aclose()
    assert first == await embedder.embed(parts[0])
    ran = embedder.runs_started() - mark - len(parts[0])
    assert ran < 40 - len(parts[0])  # the first part's own runs and at most a few more
    assert embedder._runner._queued == 0


async def test_embed_parts_failing_run_raises_after_the_parts_done_before_it() -> None:
    """A failing run raises ModelError where its part is due: the parts before it were
    yielded whole, and the model stays usable."""
    embedder = ChromaDefaultEmbeddings(batch_size=1, workers=1)
    parts = [TEXTS[:2], TEXTS[2:4], TEXTS[4:6]]
    expected = [await embedder.embed(part) for part in parts]
    session = embedder._runner._session
    embedder._runner._session = _SessionSpy(session, fail_at=3)
    got: list[list[list[float]]] = []

    async def consume() -> None:
        async for vectors in embedder.embed_parts(parts):
            got.append(vectors)

    with pytest.raises(ModelError, match="run failed"):
        await consume()
    embedder._runner._session = session
    assert got == expected[:1]
    assert [v async for v in embedder.embed_parts(parts)] == expected


@TWO_CORES
async def test_chroma_default_small_call_runs_on_every_worker() -> None:
    """A call of fewer texts than `workers * batch_size` is still cut into a batch per
    worker, so its runs go side by side (the last chunk of an ingest, say)."""
    embedder = ChromaDefaultEmbeddings(batch_size=32, workers=2)
    await embedder.embed(["load the model"])
    spy = _SessionSpy(embedder._runner._session, meet=True)
    embedder._runner._session = spy
    texts = [f"turn {n} about pottery" for n in range(8)]
    assert await embedder.embed(texts) == await ChromaDefaultEmbeddings(workers=1).embed(texts)
    assert len(spy.threads) == 2
