"""`python -m benchmarks.retrieval_ablation`: runs `memweave.bench.retrieval_ablation`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.retrieval_ablation", run_name="__main__", alter_sys=True)
