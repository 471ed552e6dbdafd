"""Time the finite-run scheduler (I28) and a whole validation run.

The scheduler is list scheduling of N requests into S slots. It is timed on the shape of the heaviest validation
runs (MLPerf Llama 2 70B's lengths at ~250,000 requests over ~1,900 slots) against the one-request-at-a-time heap
it replaced, with the same starts checked; ratios are what to compare across machines.

Run: python benchmarks/bench_finite_run.py   (prints seconds and the speed-up)."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np

from supernode.infer.finite_run import _heap_schedule, request_order, schedule
from supernode.infer.lengths import read_length_samples

LENGTHS = Path(__file__).resolve().parents[1] / "validation" / "lengths" / "mlperf-llama2-70b-24576.csv"


def _best(f, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main(repeats: int = 3) -> None:
    samples = read_length_samples(LENGTHS)
    _, outputs = request_order(samples, 251_904)
    its = np.maximum(np.ceil(outputs), 1).astype(np.int64)
    slots = 1_921
    zeros = np.zeros(len(its), np.int64)
    assert np.array_equal(schedule(its, slots)[0], _heap_schedule(its, slots, zeros)[0])
    t_block = _best(lambda: schedule(its, slots), repeats)
    t_heap = _best(lambda: _heap_schedule(its, slots, zeros), repeats)
    print(f"schedule: {len(its):,} requests into {slots:,} slots: blocked {t_block * 1e3:.1f} ms, "
          f"heap {t_heap * 1e3:.1f} ms, {t_heap / t_block:.1f}x")

    from supernode.cli import main as cli

    def validate() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli(["validate", "--json"])
            except SystemExit:
                pass

    t_val = _best(validate, 1)
    print(f"supernode validate --json (every training and inference case): {t_val:.1f} s")


if __name__ == "__main__":
    main()
