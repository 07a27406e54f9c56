"""PNG charts of benchmark results, drawn with matplotlib's object API (no pyplot state).

Every chart states its units on the axes and what was measured in its title; latencies use
log scales, since backends and history lengths span orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = [
    "f1_chart",
    "history_charts",
    "latency_chart",
    "recall_chart",
    "reducer_charts",
    "scale_charts",
]

_DPI = 120
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_PEER_MARKERS = ("s", "^", "D", "v")
_OPERATION_TITLES = {
    "append_1": "Append 1 message",
    "append_10": "Append a batch of 10",
    "read_last_20": "Read the last 20 messages",
    "read_all": "Read the whole history",
}


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def _number(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _share(value: float) -> str:
    """A share in [0, 1] as a short bar label: `.97`, `1`."""
    return "1" if value >= 0.995 else f"{value:.2f}".removeprefix("0")


def _log_y(axes: Axes) -> None:
    """A log y axis labelled 0.1, 0.2, 0.5, 1, 2, 5 ... instead of powers of ten."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(_number))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _style(axes: Axes) -> None:
    axes.grid(True, which="major", alpha=0.35)
    axes.grid(True, which="minor", alpha=0.12)
    axes.spines[["top", "right"]].set_visible(False)


def _history_panel(axes: Axes, rows: Sequence[dict[str, Any]], operation: str) -> None:
    backends = sorted({row["backend"] for row in rows}, key=[r["backend"] for r in rows].index)
    for index, backend in enumerate(backends):
        color = _COLORS[index % len(_COLORS)]
        mine = sorted(
            (r for r in rows if r["backend"] == backend and r["operation"] == operation),
            key=lambda r: r["n"],
        )
        if not mine:
            continue
        sizes = [r["n"] for r in mine]
        axes.plot(
            sizes, [r["p50_ms"] for r in mine], marker="o", color=color, label=f"{backend} p50"
        )
        axes.fill_between(
            sizes,
            [r["p50_ms"] for r in mine],
            [r["p95_ms"] for r in mine],
            color=color,
            alpha=0.12,
            linewidth=0,
        )
        floors = [(r["n"], r["floor_p50_ms"]) for r in mine if r.get("floor_p50_ms")]
        if floors:
            axes.plot(
                [n for n, _ in floors],
                [f for _, f in floors],
                linestyle="--",
                marker="x",
                color=color,
                alpha=0.8,
                label=f"{backend} raw-client floor p50",
            )
        _peer_lines(axes, mine, backend, color)
    axes.set_xscale("log")
    sizes = sorted({r["n"] for r in rows})
    axes.set_xticks(sizes, [_number(n) for n in sizes])
    axes.xaxis.set_minor_formatter(NullFormatter())
    _log_y(axes)
    axes.set_title(_OPERATION_TITLES.get(operation, operation))
    axes.set_xlabel("messages already in the session (N)")
    axes.set_ylabel("latency per call (ms, log scale)")
    _style(axes)
    peers = any(row.get("peers") for row in rows)
    axes.legend(fontsize="x-small" if peers else "small")


def _peer_lines(axes: Axes, rows: Sequence[dict[str, Any]], backend: str, color: str) -> None:
    """One dotted p50 line per peer measured beside memweave on this backend."""
    names = list(dict.fromkeys(peer["peer"] for row in rows for peer in row.get("peers") or []))
    for index, name in enumerate(names):
        points = [
            (row["n"], peer["p50_ms"])
            for row in rows
            for peer in row.get("peers") or []
            if peer["peer"] == name
        ]
        axes.plot(
            [n for n, _ in points],
            [p50 for _, p50 in points],
            linestyle=":",
            marker=_PEER_MARKERS[index % len(_PEER_MARKERS)],
            color=color,
            alpha=0.8,
            label=f"{backend}: {name} p50",
        )


def history_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Append and read latency per backend against history length: two PNGs."""
    rows = result["results"]
    paths = []
    for name, operations, what in (
        ("history_append.png", ("append_1", "append_10"), "Append latency"),
        ("history_read.png", ("read_last_20", "read_all"), "Read latency"),
    ):
        figure = Figure(figsize=(12, 4.8), layout="constrained")
        for axes, operation in zip(figure.subplots(1, 2), operations, strict=True):
            _history_panel(axes, rows, operation)
        peers = "; dotted: peers, same run" if any(row.get("peers") for row in rows) else ""
        figure.suptitle(
            f"memweave history: {what.lower()} per backend against N "
            f"(line: p50, band: p50 to p95{peers})"
        )
        paths.append(_save(figure, out / name))
    return paths


def reducer_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Per-turn cost of each way of cutting a history to budget: one PNG."""
    results = result["results"]
    bars: list[tuple[str, float, float]] = []

    def add(label: str, summary: dict[str, Any] | None) -> None:
        if summary:
            bars.append((label, float(summary["p50_ms"]), float(summary["p95_ms"])))

    add("TokenBudgetReducer, per turn", results.get("per_turn"))
    add("MessageCountReducer, per turn", results.get("count_reducer_per_turn"))
    add("floor: slicing the window", results.get("floor_slice"))
    add("naive: re-encode all, per turn", results.get("naive_per_turn"))
    peer = results.get("langchain") or {}
    if peer.get("status") == "measured":
        add("LangChain trim_messages, per turn", peer.get("per_turn"))
    if "first_call_ms" in results:
        first = float(results["first_call_ms"])
        bars.insert(0, ("TokenBudgetReducer, first call (once)", first, first))
    figure = Figure(figsize=(10, 0.55 * len(bars) + 1.8), layout="constrained")
    axes = figure.subplots()
    labels = [label for label, _, _ in bars]
    p50 = [value for _, value, _ in bars]
    p95 = [value for _, _, value in bars]
    positions = range(len(bars))
    axes.barh(positions, p95, color="#c6dbef", label="p95")
    axes.barh(positions, p50, color="#1f77b4", height=0.5, label="p50")
    for position, value, high in zip(positions, p50, p95, strict=True):
        axes.annotate(
            f"p50 {value:.3g} ms",
            (max(value, high), position),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(_number))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("time (ms, log scale)")
    params = result.get("parameters", {})
    axes.set_title(
        f"memweave reducers: {params.get('messages', '?'):,} messages cut to "
        f"{params.get('max_tokens', '?'):,} tokens, time per turn"
    )
    _style(axes)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
    return [_save(figure, out / "reducers.png")]


_SCALE_PANELS = (
    # (part, operation, floor, title, x label)
    ("turn", "turn", "floor", "Agent turn, TokenBudgetReducer(8000)", "messages in the session"),
    ("sessions", "list_page", "list_floor", "list_sessions(limit=100, after=...)", "sessions"),
    ("sessions", "info", "info_floor", "session_info(id)", "sessions"),
)


def scale_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Service scale: p50 of a turn, a session page and a session lookup against size, per
    backend, with each one's floor; one PNG (none when neither part ran)."""
    panels = [panel for panel in _SCALE_PANELS if result.get(panel[0])]
    if not panels:
        return []
    figure = Figure(figsize=(5.2 * len(panels), 4.6), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (part, operation, floor, title, label) in zip(axes_list, panels, strict=True):
        rows: list[dict[str, Any]] = result[part]
        backends = list(dict.fromkeys(row["backend"] for row in rows))
        for index, backend in enumerate(backends):
            color = _COLORS[index % len(_COLORS)]
            mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["n"])
            sizes = [r["n"] for r in mine]
            axes.plot(
                sizes,
                [r[operation]["p50_ms"] for r in mine],
                marker="o",
                color=color,
                label=f"{backend} p50",
            )
            if part == "turn":
                axes.plot(
                    sizes,
                    [r["windowed_read"]["p50_ms"] for r in mine],
                    marker=".",
                    linestyle="-.",
                    color=color,
                    alpha=0.8,
                    label=f"{backend} windowed read alone",
                )
            axes.plot(
                sizes,
                [r[floor]["p50_ms"] for r in mine],
                marker="x",
                linestyle="--",
                color=color,
                alpha=0.8,
                label=f"{backend} raw-client floor",
            )
        axes.set_xscale("log")
        sizes = sorted({r["n"] for r in rows})
        axes.set_xticks(sizes, [_number(n) for n in sizes])
        axes.xaxis.set_minor_formatter(NullFormatter())
        _log_y(axes)
        axes.set_title(title)
        axes.set_xlabel(f"{label} (log scale)")
        axes.set_ylabel("p50 latency (ms, log scale)")
        _style(axes)
        axes.legend(fontsize="x-small")
    figure.suptitle("memweave at service scale: p50 against size, beside the raw client")
    return [_save(figure, out / "scale.png")]


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
                color=_COLORS[index % len(_COLORS)],
                label=mode,
            )
            axes.bar_label(bars, fmt=_share, fontsize="xx-small", padding=1)
        axes.set_xticks(
            range(len(categories)), [label(c) for c in categories], rotation=20, ha="right"
        )
        axes.set_ylim(0, 1.05)
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
    return _save(figure, out / "retrieval_recall.png")


def latency_chart(latency: dict[str, dict[str, float]], out: Path, *, title: str) -> Path:
    """Query latency percentiles per mode: grouped bars, in milliseconds.

    Args:
        latency: `latency[mode]` with percentile keys such as `p50`, `p95`, `p99`.
        out: The folder to write `retrieval_latency.png` into.
        title: The figure title.
    """
    modes = list(latency)
    percentiles = [p for p in ("p50", "p90", "p95", "p99") if any(p in v for v in latency.values())]
    figure = Figure(figsize=(max(6.5, 2.4 * len(modes) + 2), 4.6), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(1, len(percentiles))
    shades = ("#9ecae1", "#4292c6", "#2171b5", "#08306b")
    for index, percentile in enumerate(percentiles):
        values = [float(latency[mode].get(percentile, 0.0)) for mode in modes]
        offset = (index - (len(percentiles) - 1) / 2) * width
        bars = axes.bar(
            [i + offset for i in range(len(modes))],
            values,
            width=width,
            color=shades[index % len(shades)],
            label=percentile,
        )
        axes.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=2)
    axes.set_xticks(range(len(modes)), modes)
    axes.set_xlabel("retrieval mode")
    axes.set_ylabel("query latency per search (ms)")
    axes.set_title(title)
    axes.margins(y=0.12)
    _style(axes)
    axes.legend(title="percentile", fontsize="small")
    return _save(figure, out / "retrieval_latency.png")


def f1_chart(
    f1: dict[str, float],
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
    label: Callable[[str], str] = str,
) -> Path:
    """Mean answer F1 per question category: one PNG."""
    figure = Figure(figsize=(7.5, 4.6), layout="constrained")
    axes = figure.subplots()
    values = [f1.get(category, 0.0) for category in categories]
    bars = axes.bar(range(len(categories)), values, color="#2ca02c", width=0.6)
    axes.bar_label(bars, fmt="%.2f", fontsize="small", padding=2)
    axes.set_xticks(range(len(categories)), [label(c) for c in categories])
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("question category")
    axes.set_ylabel("mean token F1 against the gold answer (0-1)")
    axes.set_title(title)
    _style(axes)
    return _save(figure, out / "answers_f1.png")
