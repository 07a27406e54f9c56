"""`python -m benchmarks.scale` in a source checkout: runs `memweave.bench.scale`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.scale", run_name="__main__", alter_sys=True)
