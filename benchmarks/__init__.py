"""Performance suites, one module each, run as `python -m benchmarks.<suite>`."""
