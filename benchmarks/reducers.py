"""`python -m benchmarks.reducers` in a source checkout: runs `memweave.bench.reducers`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.reducers", run_name="__main__", alter_sys=True)
