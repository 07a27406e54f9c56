"""`python -m benchmarks.retrieval` in a source checkout: runs `memweave.bench.retrieval`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.retrieval", run_name="__main__", alter_sys=True)
