"""Export-control and import rules as dated, sourced data; chip classification; "allowed for".

Importing this package registers the ``rules`` item kind with the catalog loader (files
``data/rules/<id>.yaml``, schema :class:`~supernode.rules.schema.Rule`) and a cross-reference
check (source ids, ``superseded_by`` chains). See docs/rules.md.
"""

from __future__ import annotations

from supernode.catalog import loader as _loader
from supernode.errors import CatalogError
from supernode.rules.classify import Classification, Interval, classify, total_processing_performance
from supernode.rules.evaluate import RuleVerdict, evaluate_rule
from supernode.rules.schema import LEVELS, OBTAINABLE_LEVELS, UNDECIDED, Rule
from supernode.rules.status import (Allowed, ChipStatus, SideStatus, Verdict, allowed_chips, allowed_systems,
                                    parse_country, parse_date, rules, rules_in_force, status)

__all__ = [
    "Allowed", "ChipStatus", "Classification", "Interval", "LEVELS", "OBTAINABLE_LEVELS", "Rule", "RuleVerdict",
    "SideStatus", "UNDECIDED", "Verdict", "allowed_chips", "allowed_systems", "check_rules", "classify", "evaluate_rule",
    "parse_country", "parse_date", "rules", "rules_in_force", "status", "total_processing_performance",
]


def check_rules(cat: _loader.Catalog) -> None:
    """Every source id a rule cites exists; ``superseded_by`` names a rule that starts on the end date."""
    table = cat.extra.get("rules", {})
    for rule_id, rule in table.items():
        path = cat.paths[("rules", rule_id)]
        for where, source_id in rule.source_ids():
            if source_id not in cat.sources:
                raise CatalogError(f"{path}: {where}: unknown source id {source_id!r}")
        if rule.superseded_by is not None:
            nxt = table.get(rule.superseded_by)
            if nxt is None:
                raise CatalogError(f"{path}: superseded_by: unknown rule id {rule.superseded_by!r}")
            if nxt.effective_date != rule.end_date:
                raise CatalogError(f"{path}: end_date: {rule.end_date} but the superseding rule "
                                   f"{nxt.id!r} takes effect on {nxt.effective_date}")


_loader.EXTRA_KINDS["rules"] = Rule
if check_rules not in _loader.CHECKERS:
    _loader.CHECKERS.append(check_rules)
