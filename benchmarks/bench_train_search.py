"""Configurations evaluated per second by the training plan search (one core, no assertions).

    python benchmarks/bench_train_search.py
"""

import time

from supernode import load_catalog
from supernode.hardware import resolve_cluster
from supernode.train.plan import TrainWorkload
from supernode.train.search import candidates, search
from supernode.train.step import estimate, validity
from supernode.workload import load_model

CASES = [  # model, --on, chips, precision, global batch, seq
    ("llama-3.1-405b", "atlas-960-superpod", None, "fp8", 15488, 8192),
    ("llama-3.1-405b", "h100", 1024, "bf16", 2048, 8192),
    ("deepseek-v3", "h800", 2048, "fp8", 15360, 4096),
]


def main() -> None:
    cat = load_catalog(use_env=False)
    for mid, on, n, prec, B, s in CASES:
        m = load_model(cat, mid)
        cl = resolve_cluster(cat, on, n)
        w = TrainWorkload(B, s, prec)
        cand = candidates(m, cl, w)
        ok, _ = validity(m, cl, w, cand)
        t0 = time.perf_counter()
        estimate(m, cl, w, cand)  # raw evaluation of every candidate as one array
        t_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = search(m, cl, w, top=3)
        t_search = time.perf_counter() - t0
        n_all = len(cand.tp)
        print(f"{mid} on {cl.id} ({cl.chips} chips, {prec}): {n_all:,} candidates, {int(ok.sum()):,} valid; "
              f"estimate {n_all / t_eval:,.0f} configurations/s; full search {t_search:.2f} s "
              f"({res.evaluated / t_search:,.0f} valid configurations/s); best step "
              f"{res.breakdown.row(0)['step_time_s']:.2f} s, MFU {res.breakdown.row(0)['mfu']:.1%}")


if __name__ == "__main__":
    main()
