"""`python -m benchmarks.checkpoints` in a source checkout: runs `memweave.bench.checkpoints`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.checkpoints", run_name="__main__", alter_sys=True)
