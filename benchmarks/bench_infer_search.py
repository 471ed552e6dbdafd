"""Time a full serving search (co-located + disaggregated) for DeepSeek-R1 on CloudMatrix 384.

Run: python benchmarks/bench_infer_search.py   (prints seconds and configurations per second)."""

from __future__ import annotations

import time

from supernode.catalog import load_catalog
from supernode.infer import SLO, Workload, search


def main(repeats: int = 5) -> None:
    cat = load_catalog()
    search(cat, "deepseek-r1", "cloudmatrix-384", workload=Workload(2048, 256), slo=SLO(2.0, 0.05))  # warm caches
    best = float("inf")
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = search(cat, "deepseek-r1", "cloudmatrix-384", workload=Workload(2048, 256), slo=SLO(2.0, 0.05))
        best = min(best, time.perf_counter() - t0)
        n = r["configurations_evaluated"]
    print(f"deepseek-r1 on cloudmatrix-384 (384 chips): full serving search {best:.3f} s, "
          f"{n:,} configurations, {n / best:,.0f} configurations/s")


if __name__ == "__main__":
    main()
