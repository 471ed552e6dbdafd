"""Configurations evaluated per second by the training plan search, on ONE core (no assertions).

    python benchmarks/bench_train_search.py [--reps 5]

The BLAS/OpenMP thread counts are pinned to 1 before numpy is imported, so the figures are
single-core rates. Each case is timed ``--reps`` times and the median is printed:

* estimate: ``estimate()`` on every generated candidate (valid or not) as one array;
* search: the full ``search()`` (candidate generation, validity, estimate, fitting filter, top-k),
  as generated candidates per second and as valid (evaluated) configurations per second.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from supernode import load_catalog  # noqa: E402
from supernode.hardware import resolve_cluster  # noqa: E402
from supernode.train.plan import TrainWorkload  # noqa: E402
from supernode.train.search import candidates, search  # noqa: E402
from supernode.train.step import estimate, validity  # noqa: E402
from supernode.workload import load_model  # noqa: E402

CASES = [  # model, --on, chips, precision, global batch, seq
    ("llama-3.1-405b", "atlas-960-superpod", None, "fp8", 15488, 8192),
    ("llama-3.1-405b", "h100", 1024, "bf16", 2048, 8192),
    ("deepseek-v3", "h800", 2048, "fp8", 15360, 4096),
]


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median reported)")
    args = ap.parse_args()
    reps = max(1, args.reps)
    print(f"one core (OMP/OPENBLAS/MKL_NUM_THREADS=1); median of {reps} repetitions per figure")
    cat = load_catalog(use_env=False)
    for mid, on, n, prec, B, s in CASES:
        m = load_model(cat, mid)
        cl = resolve_cluster(cat, on, n)
        w = TrainWorkload(B, s, prec)
        cand = candidates(m, cl, w)
        ok, _ = validity(m, cl, w, cand)
        n_all = len(cand.tp)
        estimate(m, cl, w, cand)  # warm-up (efficiency cache, page faults)
        t_eval = _median_time(lambda: estimate(m, cl, w, cand), reps)  # raw evaluation of every candidate
        res = search(m, cl, w, top=3)
        t_search = _median_time(lambda: search(m, cl, w, top=3), reps)
        print(f"{mid} on {cl.id} ({cl.chips} chips, {prec}): {n_all:,} candidates, {int(ok.sum()):,} valid\n"
              f"  estimate     {n_all / t_eval:>12,.0f} configurations/s ({t_eval * 1e3:.1f} ms)\n"
              f"  full search  {n_all / t_search:>12,.0f} candidates/s, {res.evaluated / t_search:,.0f} valid "
              f"configurations/s ({t_search * 1e3:.1f} ms)\n"
              f"  best step {res.breakdown.row(0)['step_time_s']:.2f} s, MFU {res.breakdown.row(0)['mfu']:.1%}")


if __name__ == "__main__":
    main()
