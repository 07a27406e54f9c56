"""PNG charts of benchmark results, drawn with matplotlib's object API (no pyplot state).

Every chart states its units on the axes and what was measured in its title; latencies use
log scales, since backends and history lengths span orders of magnitude.

One look for every chart: colours come from the Okabe-Ito palette (safe for the common forms
of colour blindness), each backend keeps one colour on every chart (`backend_color`), and what
is drawn beside memweave differs by line style or hatch, never by colour: a raw-client floor
is dashed (hatched `//` as a bar), a peer dotted (hatched `xx`), a naive baseline hatched
`..`. Every value written on a chart goes through `value_label` (three significant digits),
and a p95 band or whisker is drawn only where more than one sample was timed.

Each drawn series carries a gid, `"<backend>|<kind>"` (kinds: `LINE_STYLES`), so tests can
check colours and styles on the artists themselves.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = [
    "BACKEND_COLORS",
    "HATCHES",
    "LINE_STYLES",
    "OKABE_ITO",
    "backend_color",
    "f1_chart",
    "f1_figure",
    "history_charts",
    "history_figures",
    "latency_chart",
    "latency_figure",
    "recall_chart",
    "recall_figure",
    "reducer_charts",
    "reducer_figure",
    "scale_charts",
    "scale_figure",
    "value_label",
]

_DPI = 120

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
"""Okabe and Ito's colour-blind-safe palette."""

BACKEND_COLORS = {
    "memory": OKABE_ITO["black"],
    "sqlite": OKABE_ITO["blue"],
    "postgresql": OKABE_ITO["bluish green"],
    "mariadb": OKABE_ITO["orange"],
    "redis": OKABE_ITO["vermillion"],
    "redis-cluster": OKABE_ITO["reddish purple"],
    "chroma": OKABE_ITO["sky blue"],
}
"""The one colour of each backend, on every chart."""

_ALIASES = {"postgres": "postgresql", "mysql": "mariadb", "in-process": "memory"}
_SPARE = (OKABE_ITO["sky blue"], OKABE_ITO["reddish purple"], OKABE_ITO["yellow"])
_SERIES = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish green"],
    OKABE_ITO["reddish purple"],
    OKABE_ITO["sky blue"],
    OKABE_ITO["vermillion"],
)
"""Colours of series that are not backends (retrieval modes), in order."""

LINE_STYLES = {"memweave": "-", "windowed": "-.", "floor": "--", "peer": ":"}
"""Line style of each kind of series: memweave solid, floors dashed, peers dotted."""

HATCHES = {"memweave": "", "floor": "//", "baseline": "..", "peer": "xx"}
"""Hatch of each kind of bar: memweave plain, floors, naive baselines and peers hatched."""

_MARKERS = {"memweave": "o", "windowed": ".", "floor": "x"}
_PEER_MARKERS = ("s", "^", "D", "v")
_OPERATION_TITLES = {
    "append_1": "Append 1 message",
    "append_10": "Append a batch of 10",
    "read_last_20": "Read the last 20 messages",
    "read_all": "Read the whole history",
}


def backend_color(backend: str) -> str:
    """The colour of `backend` on every chart (`postgres` and `postgresql` are one backend);
    a backend not in `BACKEND_COLORS` gets a spare colour chosen by its name, so it too keeps
    one colour everywhere."""
    name = _ALIASES.get(backend, backend)
    if name in BACKEND_COLORS:
        return BACKEND_COLORS[name]
    return _SPARE[zlib.crc32(name.encode()) % len(_SPARE)]


def value_label(value: float) -> str:
    """A value written on a chart: three significant digits, trailing zeros kept (`1.00`
    beside `0.970`, `12.3`, `0.0123`); from 1,000 up, a whole number with separators."""
    if abs(value) >= 999.5:
        return f"{value:,.0f}"
    return f"{value:#.3g}".removesuffix(".")


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def _tick(value: float, _position: object = None) -> str:
    """An axis tick: 0.1, 0.2, 0.5, 1, 2, 5, 10, 1,000 (ticks are not values, see `value_label`)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _several(summary: dict[str, Any]) -> bool:
    """Whether a timed figure rests on more than one sample (a band or whisker means
    something); a record that does not say is taken at its word that p95 differs."""
    samples = summary.get("samples")
    if samples is None:
        return bool(summary.get("p95_ms") != summary.get("p50_ms"))
    return int(samples) > 1


def _log_y(axes: Axes) -> None:
    """A log y axis labelled 0.1, 0.2, 0.5, 1, 2, 5 ... instead of powers of ten."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(_tick))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _log_x_sizes(axes: Axes, sizes: Iterable[int]) -> None:
    axes.set_xscale("log")
    ticks = sorted(set(sizes))
    axes.set_xticks(ticks, [_tick(n) for n in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())


def _style(axes: Axes) -> None:
    axes.grid(True, which="major", alpha=0.35)
    axes.grid(True, which="minor", alpha=0.12)
    axes.spines[["top", "right"]].set_visible(False)


def _line(
    axes: Axes,
    points: Sequence[tuple[float, float]],
    backend: str,
    kind: str,
    label: str,
    marker: str | None = None,
) -> None:
    """One series: the backend's colour, the kind's line style, a gid naming both."""
    axes.plot(
        [x for x, _ in points],
        [y for _, y in points],
        linestyle=LINE_STYLES[kind],
        marker=marker or _MARKERS.get(kind, "o"),
        color=backend_color(backend),
        alpha=1.0 if kind == "memweave" else 0.85,
        label=label,
        gid=f"{backend}|{kind}",
    )


# -- history ------------------------------------------------------------------------------------


def _history_panel(axes: Axes, rows: Sequence[dict[str, Any]], operation: str) -> None:
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    for backend in backends:
        mine = sorted(
            (r for r in rows if r["backend"] == backend and r["operation"] == operation),
            key=lambda r: r["n"],
        )
        if not mine:
            continue
        _line(axes, [(r["n"], r["p50_ms"]) for r in mine], backend, "memweave", f"{backend} p50")
        banded = [_several(r) for r in mine]
        if any(banded):
            axes.fill_between(
                [r["n"] for r in mine],
                [r["p50_ms"] for r in mine],
                [r["p95_ms"] for r in mine],
                where=banded,
                interpolate=False,
                color=backend_color(backend),
                alpha=0.12,
                linewidth=0,
                gid=f"{backend}|band",
            )
        floors = [(r["n"], r["floor_p50_ms"]) for r in mine if r.get("floor_p50_ms")]
        if floors:
            _line(axes, floors, backend, "floor", f"{backend} raw-client floor p50")
        _peer_lines(axes, mine, backend)
    _log_x_sizes(axes, (r["n"] for r in rows))
    _log_y(axes)
    axes.set_title(_OPERATION_TITLES.get(operation, operation))
    axes.set_xlabel("messages already in the session (N)")
    axes.set_ylabel("latency per call (ms, log scale)")
    _style(axes)
    peers = any(row.get("peers") for row in rows)
    axes.legend(fontsize="x-small" if peers else "small")


def _peer_lines(axes: Axes, rows: Sequence[dict[str, Any]], backend: str) -> None:
    """One dotted p50 line per peer measured beside memweave on this backend."""
    names = list(dict.fromkeys(peer["peer"] for row in rows for peer in row.get("peers") or []))
    for index, name in enumerate(names):
        points = [
            (row["n"], peer["p50_ms"])
            for row in rows
            for peer in row.get("peers") or []
            if peer["peer"] == name
        ]
        marker = _PEER_MARKERS[index % len(_PEER_MARKERS)]
        _line(axes, points, backend, "peer", f"{backend}: {name} p50", marker)


def history_figures(result: dict[str, Any]) -> dict[str, Figure]:
    """Append and read latency per backend against history length: two figures, by file name."""
    rows = result["results"]
    figures = {}
    for name, operations, what in (
        ("history_append.png", ("append_1", "append_10"), "Append latency"),
        ("history_read.png", ("read_last_20", "read_all"), "Read latency"),
    ):
        figure = Figure(figsize=(12, 4.8), layout="constrained")
        for axes, operation in zip(figure.subplots(1, 2), operations, strict=True):
            _history_panel(axes, rows, operation)
        peers = "; dotted: peers, same run" if any(row.get("peers") for row in rows) else ""
        figure.suptitle(
            f"memweave history: {what.lower()} per backend against N\n(one colour per backend; "
            f"solid: p50, band: p50 to p95; dashed: raw-client floor p50{peers})"
        )
        figures[name] = figure
    return figures


def history_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Append and read latency per backend against history length: two PNGs."""
    return [_save(figure, out / name) for name, figure in history_figures(result).items()]


# -- reducers -----------------------------------------------------------------------------------


def _reducer_bars(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str]]:
    """(label, summary, backend, kind) of every bar, top to bottom."""
    bars: list[tuple[str, dict[str, Any], str, str]] = []

    def add(label: str, summary: dict[str, Any] | None, backend: str, kind: str) -> None:
        if summary:
            bars.append((label, summary, backend, kind))

    if "first_call_ms" in results:
        first = float(results["first_call_ms"])
        add(
            "TokenBudgetReducer, first call (once)",
            {"p50_ms": first, "p95_ms": first, "samples": 1},
            "memory",
            "memweave",
        )
    add("TokenBudgetReducer, per turn", results.get("per_turn"), "memory", "memweave")
    add(
        "MessageCountReducer, per turn", results.get("count_reducer_per_turn"), "memory", "memweave"
    )
    add("floor: slicing the window", results.get("floor_slice"), "memory", "floor")
    add("naive: re-encode all, per turn", results.get("naive_per_turn"), "memory", "baseline")
    peer = results.get("langchain") or {}
    if peer.get("status") == "measured":
        add("LangChain trim_messages, per turn", peer.get("per_turn"), "memory", "peer")
    reads = (results.get("budgeted_read") or {}).get("backends") or {}
    for backend, entry in reads.items():
        if entry.get("status") == "measured":
            add(f"budgeted read, {backend}", entry.get("read"), backend, "memweave")
            add(
                f"full read + reduce, {backend}", entry.get("full_read_reduce"), backend, "baseline"
            )
    return bars


def reducer_figure(result: dict[str, Any]) -> Figure:
    """Per-turn cost of each way of cutting a history to budget, and budgeted reads through
    the backends: one horizontal bar per figure (p50), with a p95 whisker where several calls
    were timed."""
    bars = _reducer_bars(result["results"])
    figure = Figure(figsize=(10, 0.55 * len(bars) + 2.2), layout="constrained")
    axes = figure.subplots()
    for position, (label, summary, backend, kind) in enumerate(bars):
        color = backend_color(backend)
        p50, p95 = float(summary["p50_ms"]), float(summary["p95_ms"])
        solid = kind == "memweave"
        axes.barh(
            position,
            p50,
            height=0.6,
            color=color if solid else "white",
            edgecolor=color,
            hatch=HATCHES[kind],
            gid=f"{backend}|{kind}",
        )
        high = p50
        if _several(summary) and p95 > p50:
            axes.errorbar(
                p50,
                position,
                xerr=[[0.0], [p95 - p50]],
                fmt="none",
                ecolor=color,
                capsize=3,
                label=f"_p95 {label}",
                gid=f"{backend}|p95",
            )
            high = p95
        axes.annotate(
            f"p50 {value_label(p50)} ms",
            (high, position),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    axes.set_yticks(range(len(bars)), [label for label, _, _, _ in bars])
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(_tick))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("time (ms, log scale)")
    params = result.get("parameters", {})
    reads = result["results"].get("budgeted_read") or {}
    title = (
        f"memweave reducers: {params.get('messages', 0):,} messages cut to "
        f"{params.get('max_tokens', 0):,} tokens, time per turn"
    )
    if any(label.startswith("budgeted read") for label, _, _, _ in bars):
        title += f";\nbudgeted reads of a {reads.get('messages', 0):,}-message session"
    axes.set_title(title)
    _style(axes)
    backends = list(dict.fromkeys(backend for _, _, backend, _ in bars))
    kinds = list(dict.fromkeys(kind for _, _, _, kind in bars))
    handles: list[Any] = [
        Patch(color=backend_color(b), label="in process" if b == "memory" else b) for b in backends
    ]
    handles += [
        Patch(facecolor="white", edgecolor="black", hatch=HATCHES[kind], label=kind)
        for kind in kinds
        if kind != "memweave"
    ]
    handles.append(Line2D([], [], color="black", marker="|", linestyle="-", label="p50 to p95"))
    axes.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=min(4, len(handles)),
        fontsize="small",
    )
    return figure


def reducer_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Per-turn cost of each way of cutting a history to budget: one PNG."""
    return [_save(reducer_figure(result), out / "reducers.png")]


# -- scale --------------------------------------------------------------------------------------

_SCALE_PANELS = (
    # (part, operation, floor, title, x label)
    ("turn", "turn", "floor", "Agent turn, TokenBudgetReducer(8000)", "messages in the session"),
    ("sessions", "list_page", "list_floor", "list_sessions(limit=100, after=...)", "sessions"),
    ("sessions", "info", "info_floor", "session_info(id)", "sessions"),
)


def scale_figure(result: dict[str, Any]) -> Figure | None:
    """Service scale: p50 of a turn, a session page and a session lookup against size, per
    backend, with each one's floor (None when neither part ran)."""
    panels = [panel for panel in _SCALE_PANELS if result.get(panel[0])]
    if not panels:
        return None
    figure = Figure(figsize=(5.2 * len(panels), 4.6), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (part, operation, floor, title, label) in zip(axes_list, panels, strict=True):
        rows: list[dict[str, Any]] = result[part]
        for backend in dict.fromkeys(row["backend"] for row in rows):
            mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["n"])
            points = [(r["n"], r[operation]["p50_ms"]) for r in mine]
            _line(axes, points, backend, "memweave", f"{backend} p50")
            if part == "turn":
                points = [(r["n"], r["windowed_read"]["p50_ms"]) for r in mine]
                _line(axes, points, backend, "windowed", f"{backend} windowed read alone")
            points = [(r["n"], r[floor]["p50_ms"]) for r in mine]
            _line(axes, points, backend, "floor", f"{backend} raw-client floor")
        _log_x_sizes(axes, (r["n"] for r in rows))
        _log_y(axes)
        axes.set_title(title)
        axes.set_xlabel(f"{label} (log scale)")
        axes.set_ylabel("p50 latency (ms, log scale)")
        _style(axes)
        axes.legend(fontsize="x-small")
    figure.suptitle(
        "memweave at service scale: p50 against size (solid), beside the raw client (dashed)"
    )
    return figure


def scale_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Service scale: one PNG (none when neither the turn nor the sessions part ran)."""
    figure = scale_figure(result)
    return [] if figure is None else [_save(figure, out / "scale.png")]


# -- retrieval ----------------------------------------------------------------------------------


def recall_chart(
    recall: dict[str, dict[str, dict[str, float]]],
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
    label: Callable[[str], str] = str,
) -> Path:
    """Grouped bars of recall@k: one panel per k (three to a row), categories on x, one bar
    per mode.

    Args:
        recall: `recall[mode][str(k)][category]`, values in [0, 1].
        categories: The categories to draw, in order.
        out: The folder to write `retrieval_recall.png` into.
        title: The figure title.
        label: Turns a category name into its axis label.
    """
    figure = recall_figure(recall, categories, title=title, label=label)
    return _save(figure, out / "retrieval_recall.png")


def recall_figure(
    recall: dict[str, dict[str, dict[str, float]]],
    categories: Sequence[str],
    *,
    title: str,
    label: Callable[[str], str] = str,
) -> Figure:
    """The figure `recall_chart` saves."""
    modes = list(recall)
    ks = sorted({k for by_k in recall.values() for k in by_k}, key=int)
    # Any number of cut-offs: rows of at most three panels keep the figure readable.
    columns = max(1, min(3, len(ks)))
    rows = max(1, -(-len(ks) // columns))
    figure = Figure(figsize=(max(6.5, 4.4 * columns), 4.6 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    panels = [axes for row in grid for axes in row]
    for axes in panels[len(ks) :]:
        axes.set_visible(False)
    width = 0.8 / max(1, len(modes))
    for axes, k in zip(panels, ks, strict=False):
        for index, mode in enumerate(modes):
            groups = recall[mode].get(k, {})
            values = [groups.get(category, 0.0) for category in categories]
            offset = (index - (len(modes) - 1) / 2) * width
            bars = axes.bar(
                [i + offset for i in range(len(categories))],
                values,
                width=width,
                color=_SERIES[index % len(_SERIES)],
                label=mode,
            )
            axes.bar_label(bars, fmt=value_label, fontsize="xx-small", padding=1)
        axes.set_xticks(
            range(len(categories)), [label(c) for c in categories], rotation=20, ha="right"
        )
        axes.set_ylim(0, 1.08)
        axes.set_title(f"recall@{k}")
        axes.set_xlabel("question category")
        _style(axes)
    for row in grid:
        row[0].set_ylabel("evidence recall (share of evidence turns in the top k)")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        title="mode",
        fontsize="small",
        loc="outside lower center",
        ncols=max(1, len(modes)),
    )
    figure.suptitle(title)
    return figure


def latency_chart(latency: dict[str, dict[str, float]], out: Path, *, title: str) -> Path:
    """Query latency percentiles per mode: grouped bars, in milliseconds.

    Args:
        latency: `latency[mode]` with percentile keys such as `p50`, `p95`, `p99`.
        out: The folder to write `retrieval_latency.png` into.
        title: The figure title.
    """
    return _save(latency_figure(latency, title=title), out / "retrieval_latency.png")


def latency_figure(latency: dict[str, dict[str, float]], *, title: str) -> Figure:
    """The figure `latency_chart` saves."""
    modes = list(latency)
    percentiles = [p for p in ("p50", "p90", "p95", "p99") if any(p in v for v in latency.values())]
    figure = Figure(figsize=(max(6.5, 2.4 * len(modes) + 2), 4.6), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(1, len(percentiles))
    # One hue, lighter to darker with the percentile, and a hatch each: readable in grey too.
    shades = ("#9ECAE1", "#56B4E9", "#0072B2", "#08306B")
    hatches = ("", "//", "..", "xx")
    for index, percentile in enumerate(percentiles):
        values = [float(latency[mode].get(percentile, 0.0)) for mode in modes]
        offset = (index - (len(percentiles) - 1) / 2) * width
        bars = axes.bar(
            [i + offset for i in range(len(modes))],
            values,
            width=width,
            color=shades[index % len(shades)],
            edgecolor="white",
            hatch=hatches[index % len(hatches)],
            label=percentile,
        )
        axes.bar_label(bars, fmt=value_label, fontsize="x-small", padding=2)
    axes.set_xticks(range(len(modes)), modes)
    axes.set_xlabel("retrieval mode")
    axes.set_ylabel("query latency per search (ms)")
    axes.set_title(title)
    axes.margins(y=0.12)
    _style(axes)
    axes.legend(title="percentile", fontsize="small")
    return figure


def f1_chart(
    f1: dict[str, float],
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
    label: Callable[[str], str] = str,
) -> Path:
    """Mean answer F1 per question category: one PNG."""
    return _save(f1_figure(f1, categories, title=title, label=label), out / "answers_f1.png")


def f1_figure(
    f1: dict[str, float],
    categories: Sequence[str],
    *,
    title: str,
    label: Callable[[str], str] = str,
) -> Figure:
    """The figure `f1_chart` saves."""
    figure = Figure(figsize=(7.5, 4.6), layout="constrained")
    axes = figure.subplots()
    values = [f1.get(category, 0.0) for category in categories]
    bars = axes.bar(range(len(categories)), values, color=OKABE_ITO["bluish green"], width=0.6)
    axes.bar_label(bars, fmt=value_label, fontsize="small", padding=2)
    axes.set_xticks(range(len(categories)), [label(c) for c in categories])
    axes.set_ylim(0, 1.08)
    axes.set_xlabel("question category")
    axes.set_ylabel("mean token F1 against the gold answer (0-1)")
    axes.set_title(title)
    _style(axes)
    return figure
