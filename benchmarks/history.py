"""`python -m benchmarks.history` in a source checkout: runs `memweave.bench.history`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.history", run_name="__main__", alter_sys=True)
