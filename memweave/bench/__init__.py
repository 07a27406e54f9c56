"""Performance and memory-quality suites, shipped in the wheel.

One module per suite, each run as `python -m memweave.bench.<suite>` or through
`memweave bench <suite>`: checkpoints, history, min_score, orchestration, reducers, retrieval,
retrieval_ablation, scale. A source checkout also runs them as `python -m benchmarks.<suite>`.
"""
