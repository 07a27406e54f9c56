"""Argument types shared by the benchmarks' command lines."""

from __future__ import annotations

import argparse

__all__ = ["add_rounds", "positive_int"]


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_rounds(parser: argparse.ArgumentParser) -> None:
    """The retrieval benchmark's `--rounds` option (shared by `python -m
    memweave.bench.retrieval` and `memweave bench retrieval`)."""
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="ingests timed, each between two runs of the embedder alone; the ingest figures "
        "are their medians (default: 3)",
    )
