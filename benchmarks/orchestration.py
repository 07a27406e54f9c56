"""`python -m benchmarks.orchestration`: runs `memweave.bench.orchestration`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("memweave.bench.orchestration", run_name="__main__", alter_sys=True)
