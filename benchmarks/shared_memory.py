"""`python -m benchmarks.shared_memory` in a checkout: runs `memweave.bench.shared_memory`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.shared_memory", run_name="__main__", alter_sys=True)
