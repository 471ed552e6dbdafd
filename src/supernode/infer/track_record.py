"""The serving model's track record: how far its throughput has been from published measurements of comparable runs.

Every serving estimate carries the signed errors (predicted / measured - 1) of the published inference cases
(validation/cases/infer-*.yaml) on the same chip family at a comparable load: sequences in flight per chip within a
factor :data:`WINDOW` of the estimate's. The errors are stored in data/inference/track-record.yaml, written by
``supernode validate --write-track-record`` from the model as it is; tests/test_track_record.py fails when the stored
record no longer matches the model. The record only reports; it never changes an estimate (no correction is fitted
on validation cases).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import yaml

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Strict

# comparable load: sequences in flight per chip within this factor either side of the estimate's
WINDOW = 4.0
# fewer comparable cases than this: the estimate is reported as without a track record
MIN_CASES = 3
RECORD_ID = "inference-track-record"


class TrackCase(Strict):
    id: str
    family: str
    kind: Literal["offline", "decode", "prefill"]
    sequences_per_chip: float | None  # None for a prefill case (its load is prompts, not sequences decoding)
    error_fraction: float
    expected: Literal["pass", "xfail"]


class TrackRecord(Strict):
    id: Literal["inference-track-record"]
    title: str
    note: str
    window: float
    min_cases: int
    cases: list[TrackCase]


def record_path() -> Path:
    return Path(builtin_dir()) / "inference" / "track-record.yaml"


@lru_cache(maxsize=1)
def load() -> TrackRecord:
    return parse_item(record_path(), TrackRecord)


def build(results: Sequence) -> dict:
    """The record's content from inference case results (:class:`supernode.infer.validation.CaseResult`)."""
    return {
        "id": RECORD_ID,
        "title": "The serving model's signed error on the published inference cases",
        "note": ("Written by `supernode validate --write-track-record` from validation/cases/infer-*.yaml with the "
                 "model as it is; tests/test_track_record.py fails when it no longer matches the model. "
                 "error_fraction = predicted / measured - 1 of each case's metric (positive: the model is "
                 "optimistic); sequences_per_chip = the estimate's sequences in flight per instance / chips per "
                 "instance (none for prefill cases); expected xfail = a known gap that the case file explains. "
                 "Reported beside every serving estimate (supernode.infer.track_record); never fitted on."),
        "window": WINDOW,
        "min_cases": MIN_CASES,
        "cases": [{"id": r.id, "family": r.family, "kind": r.kind,
                   "sequences_per_chip": None if r.sequences_per_chip is None else round(r.sequences_per_chip, 4),
                   "error_fraction": round(r.error_fraction, 4), "expected": r.expected} for r in results],
    }


def write(results: Sequence, path: Path | None = None) -> Path:
    """Write the record atomically (a temporary file renamed over the old one: nothing half-written)."""
    path = Path(path or record_path())
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(build(results), sort_keys=False, width=120))
    tmp.replace(path)
    load.cache_clear()
    return path


def comparable(family: str, sequences_per_chip: float, record: TrackRecord | None = None) -> dict:
    """The published cases of ``family`` whose sequences in flight per chip lie within a factor ``window`` of
    ``sequences_per_chip``, with the median and range of their signed errors (None when fewer than ``min_cases``)."""
    rec = record or load()
    s = float(sequences_per_chip)
    lo, hi = s / rec.window, s * rec.window
    fam = [c for c in rec.cases if c.family == family and c.sequences_per_chip is not None]
    near = sorted((c for c in fam if lo <= c.sequences_per_chip <= hi), key=lambda c: c.error_fraction)
    errs = np.array([c.error_fraction for c in near])
    enough = len(near) >= rec.min_cases
    return {
        "family": family, "sequences_per_chip": s, "window_factor": rec.window, "window_sequences_per_chip": [lo, hi],
        "cases": len(near), "family_cases": len(fam),
        "median_error_fraction": float(np.median(errs)) if enough else None,
        "min_error_fraction": float(errs.min()) if enough else None,
        "max_error_fraction": float(errs.max()) if enough else None,
        "case_ids": [c.id for c in near],
    }


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"


def describe(tr: dict) -> str:
    """One line for the CLI."""
    lo, hi = tr["window_sequences_per_chip"]
    where = (f"{tr['family']} runs at {_n(lo)}-{_n(hi)} sequences per chip (within {tr['window_factor']:g}x of "
             f"this plan's {_n(tr['sequences_per_chip'])})")
    if tr["median_error_fraction"] is None:
        return (f"no track record: {tr['cases']} published {where} among the validation cases ({tr['family_cases']} "
                f"of the family at any load); the estimate is unvalidated at this load")
    return (f"on {tr['cases']} published {where} the model's throughput was off the measured by "
            f"{tr['median_error_fraction']:+.0%} at the median ({tr['min_error_fraction']:+.0%} to "
            f"{tr['max_error_fraction']:+.0%}; positive: the model is optimistic)")
