"""Request-length distributions from a file (``--lengths``): CSV or JSON Lines -> :class:`Workload` (I27).

CSV: a header row naming an ``input`` and an ``output`` column (``input_tokens`` / ``output_tokens`` and
``isl`` / ``osl`` are read too) and optionally ``weight`` (requests that row stands for); one request per row.
JSON Lines (``.jsonl``): one object per line with the same keys. Any other column is ignored. Every error is one
line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from supernode.errors import UsageError
from supernode.infer.serving import Workload

_NAMES = {"input": ("input", "input_tokens", "isl"), "output": ("output", "output_tokens", "osl"),
          "weight": ("weight",)}
MAX_ROWS = 10_000_000


def _column(keys, what: str, where: str, required: bool = True) -> str | None:
    lower = {str(k).strip().lower(): k for k in keys if k is not None}
    for name in _NAMES[what]:
        if name in lower:
            return lower[name]
    if required:
        raise UsageError(f"{where}: no {what!r} column (expected one of {', '.join(_NAMES[what])})")
    return None


def _number(value, where: str, column: str, positive: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (v > 0 if positive else v >= 0) or v == float("inf"):
        kind = "a positive token count" if positive else "a non-negative weight"
        raise UsageError(f"{where}: column {column}: expected {kind}, got {value!r}")
    return v


def _rows(path: Path, label: str):
    """(row label, mapping) per request row."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UsageError(f"{label}: line {n}: not JSON ({err.msg})") from None
                if not isinstance(obj, dict):
                    raise UsageError(f"{label}: line {n}: expected an object with input and output keys")
                yield f"{label}: line {n}", obj
        return
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise UsageError(f"{label}: empty file (expected a header row with input and output columns)")
        for n, row in enumerate(reader, 2):
            yield f"{label}: row {n}", row


def read_length_samples(path: str | Path, output_mean_tokens: float | None = None,
                        max_output_tokens: float | None = None):
    """The per-request lengths in ``path`` as :class:`supernode.infer.finite_run.LengthSamples`.
    ``max_output_tokens``: the engine's output limit; longer outputs stop there. ``output_mean_tokens``: scale the
    output lengths to this mean, keeping their shape (a run whose generated lengths differ from the file's reference
    outputs, with its own mean measured); with a limit, the scale s solves mean(min(s O, limit)) = the mean."""
    from supernode.infer.finite_run import LengthSamples

    p = Path(path)
    label = f"--lengths: {p}"
    if not p.exists():
        raise UsageError(f"{label}: no such file")
    if not p.is_file():
        raise UsageError(f"{label}: not a regular file (expected CSV or JSON Lines)")
    inputs, outputs, w = _parsed(p, label)
    o = outputs.copy()
    if max_output_tokens is not None:
        if not 1 <= max_output_tokens < float("inf"):
            raise UsageError(f"{label}: output limit must be a positive token count, got {max_output_tokens}")
        o = np.minimum(o, max_output_tokens)
    if output_mean_tokens is not None:
        if not 0 < output_mean_tokens < float("inf"):
            raise UsageError(f"{label}: output mean must be a positive token count, got {output_mean_tokens}")
        o = o * (output_mean_tokens / np.average(o, weights=w))
        if max_output_tokens is not None:
            o = _rescaled_under_limit(o, w, output_mean_tokens, max_output_tokens, label)
    return LengthSamples(inputs.copy(), o, w.copy())


_PARSED: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _parsed(p: Path, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The file's (inputs, outputs, weights), checked; memoized on the file's path, size and modification time (a
    validation run reads the same few length files for dozens of cases). The arrays are read-only: callers copy."""
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _PARSED:
        if len(_PARSED) >= 32:
            _PARSED.clear()
        arrays = _parse(p, label)
        for a in arrays:
            a.flags.writeable = False
        _PARSED[key] = arrays
    return _PARSED[key]


def _parse(p: Path, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check every row of ``p``: (inputs, outputs, weights); errors name the file, row and column."""
    inputs, outputs, weights = [], [], []
    cols = None
    try:
        for where, row in _rows(p, label):
            if cols is None or any(c not in row for c in cols[:2]):
                cols = (_column(row.keys(), "input", where), _column(row.keys(), "output", where),
                        _column(row.keys(), "weight", where, required=False))
            inputs.append(_number(row[cols[0]], where, cols[0], True))
            outputs.append(_number(row[cols[1]], where, cols[1], True))
            weights.append(_number(row[cols[2]], where, cols[2], False) if cols[2] and row.get(cols[2]) not in
                           (None, "") else 1.0)
            if len(inputs) > MAX_ROWS:
                raise UsageError(f"{label}: more than {MAX_ROWS:,} rows (group equal lengths with a weight column)")
    except UnicodeDecodeError:
        raise UsageError(f"{label}: not a UTF-8 text file (expected CSV or JSON Lines)") from None
    if not inputs:
        raise UsageError(f"{label}: no requests (expected rows with input and output token counts)")
    w = np.asarray(weights, float)
    if w.sum() <= 0:
        raise UsageError(f"{label}: column weight: the weights sum to zero")
    return np.asarray(inputs, float), np.asarray(outputs, float), w


def _rescaled_under_limit(o, w, mean: float, limit: float, label: str):
    """min(s o, limit) with s such that its weighted mean is ``mean`` (bisection: the mean rises with s)."""
    if mean >= limit:
        raise UsageError(f"{label}: output mean {mean:g} is not below the output limit {limit:g}")

    def m(s):
        return float(np.average(np.minimum(s * o, limit), weights=w))

    lo, hi = 1.0, 2.0
    while m(hi) < mean:
        lo, hi = hi, hi * 2.0
    if m(lo) > mean:
        lo = 0.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if m(mid) < mean else (lo, mid)
    return np.minimum(hi * o, limit)


def read_lengths(path: str | Path, ttft_quantile: float = 0.9, output_mean_tokens: float | None = None,
                 max_output_tokens: float | None = None) -> Workload:
    """The request-length distribution in ``path`` as a :class:`Workload` (means and I27's effective lengths);
    ``output_mean_tokens`` and ``max_output_tokens`` as in :func:`read_length_samples`."""
    return read_length_samples(path, output_mean_tokens, max_output_tokens).workload(ttft_quantile)
