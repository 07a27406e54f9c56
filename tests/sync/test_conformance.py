"""The conformance clauses, run through the blocking face on every backend.

Each clause of the listed modules of `tests/conformance` is collected here again, with the
fixtures of `tests/sync/conftest.py`: its `history` is a blocking provider whose every call
is a plain call from a worker thread (`ThroughSync`). So the blocking face is held to the
same rules, in the same words, without a twin suite. Left out: clauses that need the async
provider itself (the harness writes raw entries or expires sessions through it). The core
groups run here (append, order, idempotency, isolation, limits, clear, pages, edits, sessions,
windows); concurrency across processes, lifecycle, reducer modes and the session-id property
tests exercise the async implementation the blocking face drives, and run in
`tests/conformance` only, which keeps the suite inside CI's time.
"""

from __future__ import annotations

import importlib
import inspect

CLAUSES = [
    "test_batches",
    "test_closed",
    "test_edits",
    "test_idempotency",
    "test_isolation",
    "test_order",
    "test_paging",
    "test_sessions",
    "test_window",
]

for _module_name in CLAUSES:
    _module = importlib.import_module(f"tests.conformance.{_module_name}")
    for _name, _clause in vars(_module).items():
        if not _name.startswith("test_") or not callable(_clause):
            continue
        if "harness" in inspect.signature(_clause).parameters:
            continue
        globals()[_name] = _clause
