"""`python -m benchmarks.min_score` in a source checkout: runs `memweave.bench.min_score`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.min_score", run_name="__main__", alter_sys=True)
