"""Apply one rule's predicates to one chip: three-valued logic, first matching clause wins.

A predicate is True, False or None (undecided: it depends on an attribute that is not known).
``all`` is False if any part is False, else None if any is None; ``any`` is True if any part is
True, else None if any is None. Clauses are tried in order: a True clause decides unless an
earlier clause was undecided; an undecided clause adds its level to the possible levels and
evaluation goes on. The verdict is decided when only one level is possible; otherwise it is
``undecided`` and names the attributes that would settle it. Nothing is guessed.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from supernode.rules.classify import Classification, num
from supernode.rules.schema import (BANDWIDTH_ATTRS, NUMERIC_ATTRS, UNDECIDED, AllOf, AnyOf, Atom, Rule,
                                    level_rank)

Truth = bool | None


def _describe_atom(atom: Atom) -> str:
    if atom.op == "unknown":
        return f"{atom.attr} not published"
    if atom.attr in NUMERIC_ATTRS:
        unit = f" {atom.unit}" if atom.attr in BANDWIDTH_ATTRS else ""
        return f"{num(float(atom.value))}{unit}"  # type: ignore[arg-type]
    return str(atom.value)


def eval_atom(atom: Atom, c: Classification) -> tuple[Truth, str]:
    """(truth, text) of one comparison, e.g. ``(True, "TPP 15,832 >= 4,800")``."""
    a, op = atom.attr, atom.op
    if a in NUMERIC_ATTRS:
        iv = c.interval(a)
        if op == "unknown":
            return (not iv.known), f"{c.describe(a)}"
        t = atom.threshold_si
        if op == ">=":
            truth: Truth = True if iv.low >= t else False if iv.high < t else None
        elif op == ">":
            truth = True if iv.low > t else False if iv.high <= t else None
        elif op == "<":
            truth = True if iv.high < t else False if iv.low >= t else None
        else:  # "<="
            truth = True if iv.high <= t else False if iv.low > t else None
        sym = op if truth is not False else {">=": "<", ">": "<=", "<": ">=", "<=": ">"}[op]
        text = f"{c.describe(a)} {sym} {_describe_atom(atom)}" if truth is not None else (
            f"{c.describe(a)}: cannot tell whether {op} {_describe_atom(atom)}")
        return truth, text
    if a == "datacenter":
        truth = c.datacenter == atom.value
        return truth, f"{'datacenter' if c.datacenter else 'not designed or marketed for datacenters'}"
    have = (c.chip_id if a == "chip_id" else c.vendor).casefold()
    values = [atom.value] if isinstance(atom.value, str) else list(atom.value)  # type: ignore[arg-type]
    # a listed name matches the whole name or its leading words ("Intel" ~ "Intel (Habana Labs)")
    hit = any(have == v.casefold() or have.startswith(v.casefold() + " ") for v in values)
    truth = hit if op in ("in", "==") else not hit
    name = "chip" if a == "chip_id" else "vendor"
    return truth, f"{name} {c.chip_id if a == 'chip_id' else c.vendor}"


def eval_predicate(pred: Atom | AllOf | AnyOf, c: Classification) -> tuple[Truth, list[str]]:
    """(truth, texts of the comparisons that settle it; or of the undecided ones)."""
    if isinstance(pred, Atom):
        truth, text = eval_atom(pred, c)
        return truth, [text]
    parts = [eval_predicate(p, c) for p in (pred.all if isinstance(pred, AllOf) else pred.any)]
    decisive = False if isinstance(pred, AllOf) else True
    hits = [t for truth, texts in parts if truth is decisive for t in texts]
    if hits:
        return decisive, hits[:1] if decisive is False else hits
    unknown = [t for truth, texts in parts if truth is None for t in texts]
    if unknown:
        return None, unknown
    return (not decisive), [t for _, texts in parts for t in texts]


def _numeric(pred: Atom | AllOf | AnyOf) -> bool:
    return all(a in NUMERIC_ATTRS for a in _attrs_in(pred))


def _attrs_in(pred: Atom | AllOf | AnyOf) -> list[str]:
    if isinstance(pred, Atom):
        return [pred.attr]
    return [a for p in (pred.all if isinstance(pred, AllOf) else pred.any) for a in _attrs_in(p)]


@dataclass(frozen=True)
class RuleVerdict:
    """One rule's verdict on one chip (before the buyer is considered)."""

    rule_id: str
    label: str  # the classification, e.g. "3A090.a.1" or "not 3A090"
    level: str  # a Level, or "undecided"
    possible_levels: tuple[str, ...]  # one level when decided
    reason: str
    source_id: str
    locator: str
    unknown_attrs: tuple[str, ...] = ()


def evaluate_rule(rule: Rule, c: Classification, date: _dt.date | None = None) -> RuleVerdict:
    """Verdict of ``rule`` on the chip ``c``. ``date`` before ``compliance_date`` turns it to free."""
    if rule.scope is not None:
        truth, texts = eval_predicate(rule.scope, c)
        if truth is False:
            return RuleVerdict(rule.id, "not subject", "free", ("free",),
                               f"{rule.scope_note} ({'; '.join(texts)})", rule.source, rule.locator)
    possible: list[str] = []
    pending: list[tuple[str, list[str]]] = []  # undecided clauses so far
    unknown_attrs: list[str] = []
    decided = None
    for clause in rule.clauses:
        truth, texts = eval_predicate(clause.when, c)
        if truth is None:
            possible.append(clause.level)
            pending.append((clause.label, texts))
            unknown_attrs += [a for a in _attrs_in(clause.when) if a in c.unknown]
            continue
        if truth:
            possible.append(clause.level)
            decided = (clause, texts)
            break
    if decided is None:
        possible.append(rule.default_level)
    levels = tuple(sorted(set(possible), key=level_rank))
    if len(levels) == 1 and decided is not None:
        clause, texts = decided
        verdict = RuleVerdict(rule.id, clause.label, clause.level, levels,
                              f"{'; '.join(texts)}: {clause.note}", clause.source or rule.source,
                              clause.locator or rule.locator)
    elif len(levels) == 1:
        misses = []  # the thresholds the chip stays under (named-chip and market tests are left out)
        for clause in rule.clauses:
            if clause.level == rule.default_level:
                continue
            truth, texts = eval_predicate(clause.when, c)
            if truth is False and _numeric(clause.when):
                misses.append(f"not {clause.label}: {texts[0]}")
        label = rule.default_label if rule.clauses else "no chip test"
        verdict = RuleVerdict(rule.id, label, rule.default_level, levels,
                              "; ".join(misses + [rule.default_note]), rule.source, rule.locator)
    else:
        what = "; ".join(f"{label}? {', '.join(texts)}" for label, texts in pending)
        attrs = tuple(dict.fromkeys(unknown_attrs))
        needs = ", ".join(f"{a} ({c.unknown[a]})" for a in attrs) or "an unknown attribute"
        verdict = RuleVerdict(rule.id, "undecided", UNDECIDED, levels,
                              f"undecided: needs {needs}; {what}; possible levels: {', '.join(levels)}",
                              rule.source, rule.locator, attrs)
    if date is not None and rule.compliance_date is not None and date < rule.compliance_date \
            and verdict.level != "free":
        label = "not yet binding" if verdict.level == UNDECIDED else f"{verdict.label} (not yet binding)"
        return RuleVerdict(rule.id, label, "free", ("free",),
                           f"{verdict.reason} -- but compliance is not required before "
                           f"{rule.compliance_date.isoformat()}", verdict.source_id, verdict.locator)
    return verdict
