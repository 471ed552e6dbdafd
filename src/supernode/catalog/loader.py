"""Load the catalog: the built-in data shipped in the package, then overlay directories.

A catalog directory holds ``chips/``, ``systems/``, ``sources/`` (and later ``models/``,
``rules/``), one YAML item per file. Overlays (``--catalog DIR`` or ``SUPERNODE_CATALOG``, a
``os.pathsep``-separated list) override built-in items with the same id or add new ones; they
pass the same validation. Every error is one line naming the file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from supernode.catalog.schema import Chip, Quantity, Source, System
from supernode.errors import CatalogError

ENV_VAR = "SUPERNODE_CATALOG"
KINDS = ("sources", "chips", "systems")
M = TypeVar("M", bound=BaseModel)


# libyaml's parser where PyYAML was built with it (the PyPI wheels are): the same safe constructor and resolver,
# several times faster on the ~1,000 files a validation run reads
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):
    """Safe loader that keeps dates as strings (we store dates as ISO text)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error becomes a one-line CatalogError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}:{where}: invalid YAML: {problem}") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from None


def validation_message(path: Path | str, exc: ValidationError) -> str:
    """One line: file, dotted field path, what was expected."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required field is missing"
    extra = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}: {loc}: {msg}{extra}"


def parse_item(path: Path, model: type[M]) -> M:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping with an 'id' key at top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(validation_message(path, exc)) from None


@dataclass
class Catalog:
    """All catalog items by id, with the file each came from."""

    chips: dict[str, Chip] = field(default_factory=dict)
    systems: dict[str, System] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    paths: dict[tuple[str, str], Path] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # other kinds (models, rules) by loaders

    def chip(self, chip_id: str) -> Chip:
        return _get(self.chips, chip_id, "chip")

    def system(self, system_id: str) -> System:
        return _get(self.systems, system_id, "system")

    def source(self, source_id: str) -> Source:
        return _get(self.sources, source_id, "source")

    def path(self, kind: str, item_id: str) -> Path | None:
        return self.paths.get((kind, item_id))


def _get(table: dict[str, Any], key: str, what: str) -> Any:
    from supernode.errors import UsageError, close_ids

    try:
        return table[key]
    except KeyError:
        close = close_ids(key, table)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see `supernode catalog {what}s`"
        raise UsageError(f"unknown {what} id {key!r}{hint}") from None


MODELS: dict[str, type[BaseModel]] = {"sources": Source, "chips": Chip, "systems": System}
# other item kinds (models, rules, ...) register here: kind -> (pydantic model, checker)
EXTRA_KINDS: dict[str, type[BaseModel]] = {}


def builtin_dir() -> Path:
    return Path(str(resources.files("supernode") / "data"))


def _load_dir(root: Path, cat: Catalog) -> None:
    if not root.is_dir():
        raise CatalogError(f"{root}: catalog directory does not exist")
    for kind, model in list(MODELS.items()) + list(EXTRA_KINDS.items()):
        folder = root / kind
        if not folder.is_dir():
            continue
        seen: dict[str, Path] = {}
        table = getattr(cat, kind) if kind in MODELS else cat.extra.setdefault(kind, {})
        for path in sorted(folder.glob("*.y*ml")):
            item = parse_item(path, model)
            item_id = getattr(item, "id")
            if item_id in seen:
                raise CatalogError(f"{path}: id: duplicate id {item_id!r} (also in {seen[item_id].name})")
            seen[item_id] = path
            table[item_id] = item
            cat.paths[(kind, item_id)] = path


def overlay_dirs(explicit: list[str | Path] | None = None) -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in (explicit or [])]
    return dirs


def iter_quantities(obj: Any, prefix: str = "") -> Any:
    """Yield (dotted field path, Quantity) for every number record inside a catalog item."""
    if isinstance(obj, Quantity):
        yield prefix, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from iter_quantities(getattr(obj, name), f"{prefix}.{name}" if prefix else name)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from iter_quantities(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from iter_quantities(v, f"{prefix}.{i}")


CHECKERS: list[Callable[[Catalog], None]] = []


def _check_references(cat: Catalog) -> None:
    for kind in ("chips", "systems", *cat.extra):
        table = getattr(cat, kind) if kind in MODELS else cat.extra[kind]
        for item_id, item in table.items():
            for where, q in iter_quantities(item):
                if q.source is not None and q.source not in cat.sources:
                    raise CatalogError(f"{cat.paths[(kind, item_id)]}: {where}.source: unknown source id {q.source!r}")
    for chip_id, chip in cat.chips.items():
        if chip.variant_of is not None and chip.variant_of not in cat.chips:
            raise CatalogError(f"{cat.paths[('chips', chip_id)]}: variant_of: unknown chip id {chip.variant_of!r}")
    for sys_id, system in cat.systems.items():
        for i, member in enumerate(system.composition):
            if member.chip not in cat.chips:
                raise CatalogError(
                    f"{cat.paths[('systems', sys_id)]}: composition.{i}.chip: unknown chip id {member.chip!r}")
    for check in CHECKERS:
        check(cat)


_CACHE: dict[tuple[str, ...], Catalog] = {}


def load_catalog(overlays: list[str | Path] | None = None, *, use_env: bool = True) -> Catalog:
    """Built-in catalog plus overlays (env ``SUPERNODE_CATALOG`` first, then ``overlays``)."""
    dirs = [builtin_dir()] + (overlay_dirs(overlays) if use_env else [Path(p) for p in overlays or []])
    key = tuple(str(d.resolve()) for d in dirs)
    if key in _CACHE and len(dirs) == 1:
        return _CACHE[key]
    cat = Catalog()
    for d in dirs:
        _load_dir(d, cat)
    _check_references(cat)
    if len(dirs) == 1:
        _CACHE[key] = cat
    return cat
