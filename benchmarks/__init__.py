"""Entry points of a source checkout: `python -m benchmarks.<suite>` runs `memweave.bench.<suite>`.

The suites themselves live in `memweave/bench/`, so `memweave bench` works from a wheel too.
"""
