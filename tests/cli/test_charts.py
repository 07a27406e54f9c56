"""`memweave bench` charts: one colour per backend on every chart, peers and floors told apart by
line style or hatch, one formatting function for every value written on a chart, and no p95 band
or whisker where a single sample was timed. Checked on the matplotlib artists, not on pixels."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from matplotlib.artist import Artist
from matplotlib.collections import Collection
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from memweave.cli import _charts
from memweave.cli._charts import (
    BACKEND_COLORS,
    HATCHES,
    LINE_STYLES,
    OKABE_ITO,
    backend_color,
    value_label,
)


def _summary(p50: float, samples: int = 20) -> dict[str, Any]:
    return {"p50_ms": p50, "p95_ms": p50 * 1.6, "mean_ms": p50 * 1.1, "samples": samples}


def _history(samples: int = 20) -> dict[str, Any]:
    rows = []
    for backend, base in (("memory", 0.02), ("sqlite", 0.4), ("redis", 0.3)):
        for n in (100, 1000):
            for operation in ("append_1", "append_10", "read_last_20", "read_all"):
                peers = (
                    [{"peer": "LangChain", "p50_ms": base * 3, "p95_ms": base * 4, "samples": 5}]
                    if backend != "memory"
                    else []
                )
                rows.append(
                    {
                        "backend": backend,
                        "n": n,
                        "operation": operation,
                        "p50_ms": base * n / 100,
                        "p95_ms": base * n / 50,
                        "floor_p50_ms": None if backend == "memory" else base / 2,
                        "samples": samples,
                        "peers": peers,
                    }
                )
    return {"results": rows, "peers": []}


def _reducers(naive_samples: int = 3) -> dict[str, Any]:
    read = {
        "status": "measured",
        "read": _summary(2.0),
        "full_read_reduce": _summary(60.0, 3),
        "first_read_ms": 9.0,
    }
    return {
        "parameters": {"messages": 10_000, "max_tokens": 4_000},
        "results": {
            "first_call_ms": 40.0,
            "per_turn": _summary(0.2),
            "count_reducer_per_turn": _summary(0.03),
            "floor_slice": _summary(0.001),
            "naive_per_turn": _summary(300.0, naive_samples),
            "langchain": {"status": "measured", "per_turn": _summary(900.0, 1)},
            "budgeted_read": {
                "messages": 100_000,
                "backends": {"sqlite": dict(read), "redis": dict(read)},
            },
        },
    }


def _scale() -> dict[str, Any]:
    turn = [
        {
            "backend": backend,
            "n": n,
            "turn": _summary(1.0),
            "windowed_read": _summary(0.5),
            "floor": _summary(0.2),
        }
        for backend in ("sqlite", "postgresql", "mariadb", "redis")
        for n in (1000, 10000)
    ]
    sessions = [
        {
            "backend": backend,
            "n": n,
            "list_page": _summary(0.8),
            "list_floor": _summary(0.3),
            "info": _summary(0.2),
            "info_floor": _summary(0.1),
        }
        for backend in ("sqlite", "postgresql", "mariadb", "redis")
        for n in (1000, 10000)
    ]
    return {"turn": turn, "sessions": sessions}


def _figures() -> list[Figure]:
    scale = _charts.scale_figure(_scale())
    assert scale is not None
    return [
        *_charts.history_figures(_history()).values(),
        _charts.reducer_figure(_reducers()),
        scale,
    ]


def _series(figure: Figure) -> Iterator[tuple[str, str, Artist]]:
    """(backend, kind, artist) of every artist a chart tagged with `backend|kind`."""
    for axes in figure.axes:
        artists: list[Artist] = [*axes.lines, *axes.patches, *axes.collections]
        for artist in artists:
            gid = artist.get_gid()
            if gid and "|" in gid:
                backend, kind = gid.split("|", 1)
                yield backend, kind, artist


def _color(artist: Artist, kind: str) -> str:
    if isinstance(artist, Line2D):
        return to_hex(artist.get_color())
    if isinstance(artist, Rectangle):
        solid = kind == "memweave"
        return to_hex(artist.get_facecolor() if solid else artist.get_edgecolor())
    assert isinstance(artist, Collection)
    return to_hex(artist.get_facecolor()[0])


def test_charts_give_each_backend_one_colour_everywhere() -> None:
    """A backend has the same colour on every chart, and two backends never share one."""
    seen: dict[str, set[str]] = defaultdict(set)
    for figure in _figures():
        for backend, kind, artist in _series(figure):
            if kind != "p95":
                seen[backend].add(_color(artist, kind))
    assert set(seen) >= {"memory", "sqlite", "postgresql", "mariadb", "redis"}
    for backend, colours in seen.items():
        assert colours == {backend_color(backend).lower()}, (backend, colours)
    assert len({backend_color(backend) for backend in seen}) == len(seen)


def test_charts_tell_floors_and_peers_apart_by_line_style() -> None:
    """memweave's lines are solid, floors dashed, peers dotted (colours: the test above)."""
    kinds: set[str] = set()
    for figure in _figures():
        for _backend, kind, artist in _series(figure):
            if isinstance(artist, Line2D) and kind != "p95":
                kinds.add(kind)
                assert artist.get_linestyle() == LINE_STYLES[kind], kind
    assert {"memweave", "floor", "peer", "windowed"} <= kinds


def test_reducer_chart_tells_floors_baselines_and_peers_apart_by_hatch() -> None:
    """A bar that is not memweave is hatched by its kind; memweave's bars are plain."""
    hatches: dict[str, set[str]] = defaultdict(set)
    for _backend, kind, artist in _series(_charts.reducer_figure(_reducers())):
        if isinstance(artist, Rectangle):
            hatches[kind].add(artist.get_hatch() or "")
    assert hatches == {kind: {HATCHES[kind]} for kind in ("memweave", "floor", "baseline", "peer")}


def test_backend_colours_are_okabe_ito() -> None:
    """Every backend colour, and the spare ones for unknown backends, is from Okabe-Ito."""
    palette = {colour.lower() for colour in OKABE_ITO.values()}
    assert {colour.lower() for colour in BACKEND_COLORS.values()} <= palette
    assert backend_color("some-new-store").lower() in palette
    assert backend_color("postgres") == backend_color("postgresql")


@given(st.floats(min_value=0.001, max_value=999.4))
def test_value_label_keeps_three_significant_digits(value: float) -> None:
    """Below 1,000 every label has three significant digits, trailing zeros included."""
    digits = value_label(value).replace(".", "").lstrip("0")
    assert len(digits) == 3, value_label(value)


def test_value_label_writes_one_like_its_neighbours() -> None:
    """1 is `1.00` beside `0.970`, never `1` beside `.97`; thousands get separators."""
    assert [value_label(v) for v in (1.0, 0.97, 0.5, 12.34, 1234.5)] == [
        "1.00",
        "0.970",
        "0.500",
        "12.3",
        "1,234",
    ]


def _value_figures() -> list[Figure]:
    recall = {
        mode: {"5": {"single_hop": 1.0, "multi_hop": 0.97, "overall": 0.5}}
        for mode in ("dense", "hybrid")
    }
    categories = ["single_hop", "multi_hop", "overall"]
    return [
        _charts.recall_figure(recall, categories, title="recall"),
        _charts.latency_figure(
            {"dense": {"p50": 1.0, "p95": 12.5}, "hybrid": {"p50": 0.97, "p95": 1234.0}},
            title="latency",
        ),
        _charts.f1_figure(
            {"single_hop": 1.0, "overall": 0.4}, ["single_hop", "overall"], title="f1"
        ),
        _charts.reducer_figure(_reducers()),
    ]


def test_charts_write_every_value_with_value_label() -> None:
    """Each number written on a bar is exactly what `value_label` makes of it."""
    numbers = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]*)?")
    labels = [
        text.get_text()
        for figure in _value_figures()
        for axes in figure.axes
        for text in axes.texts
        if text.get_text()
    ]
    assert len(labels) >= 20
    for label in labels:
        (number,) = numbers.findall(label.removeprefix("p50 "))
        assert value_label(float(number.replace(",", ""))) == number, label


def _whiskers(figure: Figure) -> set[str]:
    return {
        str(container.get_label()).removeprefix("_p95 ")
        for axes in figure.axes
        for container in axes.containers
        if isinstance(container, ErrorbarContainer)
    }


def test_reducer_chart_draws_no_whisker_for_a_single_sample() -> None:
    """The first call (and any figure of one sample) gets no p95 whisker; the others do."""
    whiskers = _whiskers(_charts.reducer_figure(_reducers(naive_samples=1)))
    assert "TokenBudgetReducer, per turn" in whiskers
    assert "budgeted read, redis" in whiskers
    assert "TokenBudgetReducer, first call (once)" not in whiskers
    assert "naive: re-encode all, per turn" not in whiskers
    assert "LangChain trim_messages, per turn" not in whiskers


def test_history_chart_draws_no_band_for_a_single_sample() -> None:
    """A p50-to-p95 band is drawn from several samples, never from one."""

    def bands(samples: int) -> int:
        figures = _charts.history_figures(_history(samples)).values()
        return sum(kind == "band" for figure in figures for _, kind, _ in _series(figure))

    assert bands(20) > 0
    assert bands(1) == 0
