"""Error types. Every error carries a one-line message naming the file, field or parameter."""

import math
from numbers import Integral, Real


class SupernodeError(Exception):
    """Base class; ``str(err)`` is a one-line, user-facing message."""

    exit_code = 1


class CatalogError(SupernodeError):
    """A catalog file is malformed (unknown key, missing unit, bad value, unknown source...)."""

    exit_code = 2


class UsageError(SupernodeError):
    """Bad input on the command line or API: unknown id, impossible configuration."""

    exit_code = 2


def one_of(flag: str, name: str | None, choices: tuple[str, ...]) -> str:
    """``name``, the first of ``choices`` when None, or a one-line :class:`UsageError` naming ``flag`` and the
    choices."""
    name = name or choices[0]
    if name not in choices:
        raise UsageError(f"{flag}: expected one of {', '.join(choices)}, got {name!r}")
    return name


def close_ids(key: str, ids, limit: int = 5) -> list[str]:
    """Catalog ids a mistyped ``key`` probably meant, for an error's "did you mean" hint: ids that contain it or that
    it contains once case and separators are ignored (``cloudmatrix384`` -> ``cloudmatrix-384``), then near spellings
    (difflib ratio >= 0.75 on the same normalized form). Empty when nothing is close."""
    import difflib
    import re

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    k = norm(key)
    if not k:
        return []
    by_norm: dict[str, list[str]] = {}
    for i in ids:
        by_norm.setdefault(norm(i), []).append(i)
    # the same id but for case and separators, then ids that contain the key, then the longest ids the key contains
    exact = sorted(by_norm.get(k, []))
    longer = sorted((i for n, g in by_norm.items() if k in n and n != k for i in g), key=lambda i: (len(norm(i)), i))
    shorter = sorted((i for n, g in by_norm.items() if n and n in k and n != k for i in g), key=lambda i: (-len(norm(i)), i))
    hits = exact + longer + shorter
    if not hits:
        near = difflib.get_close_matches(k, list(by_norm), n=limit, cutoff=0.75)
        hits = [i for n in near for i in sorted(by_norm[n])]
    return hits[:limit]


def is_positive_int(v) -> bool:
    """A whole number >= 1 (Python or numpy integer; a bool is no count)."""
    return isinstance(v, Integral) and not isinstance(v, bool) and v >= 1


def is_positive_number(v) -> bool:
    """A finite real number > 0 (Python or numpy; a bool is no amount, nan and inf are none)."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and bool(v > 0)
