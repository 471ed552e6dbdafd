"""Country codes: the ISO 3166-1 alpha-2 codes officially assigned, from ``data/countries/iso-3166-1.yaml``.

A buyer (``--buyer``, ``--allowed-for``) and a rule's ``jurisdiction`` / ``buyers`` must be one of them: a
well-formed but unassigned code such as ``XX`` or ``ZZ`` is an error, not a country no rule covers.
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from supernode.catalog.loader import builtin_dir

_PATH = ("countries", "iso-3166-1.yaml")


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    path = builtin_dir().joinpath(*_PATH)
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))["rows"]
    return {str(code): str(name) for code, name in rows}


def is_assigned(code: str) -> bool:
    """Whether ``code`` (upper case) is an officially assigned ISO 3166-1 alpha-2 code."""
    return code in _names()
