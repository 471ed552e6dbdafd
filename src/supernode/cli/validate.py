"""`supernode validate`: predicted vs measured for every published training case."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        cases: Optional[Path] = typer.Option(None, "--cases", help="Folder of case files (default validation/cases)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Run the validation cases; exit 1 when a case is outside its tolerance."""
        from supernode.cli import console, emit_json, get_catalog
        from supernode.train.validation import load_cases, run_case, summary

        cat = get_catalog()
        results = [run_case(cat, c) for c in load_cases(cases)]
        s = summary(results)
        if as_json:
            emit_json({"cases": [{"id": r.case.id, "metric": r.case.metric.name, "unit": r.case.metric.unit,
                                  "predicted": r.predicted, "measured": r.measured,
                                  "error_fraction": r.error_fraction, "tolerance": r.case.tolerance,
                                  "within_tolerance": r.within, "expected_failure": r.case.expected_failure,
                                  "plan": r.plan, "step_time_s": r.step_time_s, "source": r.case.source,
                                  "locator": r.case.locator} for r in results], "summary": s})
        else:
            from rich.table import Table

            t = Table(title="training model vs published measurements", title_justify="left")
            for h in ("case", "metric", "predicted", "measured", "error", "tol", "status"):
                t.add_column(h, justify="left" if h in ("case", "metric", "status") else "right")
            for r in results:
                status = "ok" if r.within else ("known gap" if r.case.expected_failure else "OUTSIDE")
                t.add_row(r.case.id, f"{r.case.metric.name} [{r.case.metric.unit}]", f"{r.predicted:.4g}",
                          f"{r.measured:.4g}", f"{r.error_fraction:+.1%}", f"{r.case.tolerance:.0%}", status)
            con = console()
            con.print(t)
            con.print(f"{s['cases']} cases: median |error| {s['median_abs_error_fraction']:.1%}, "
                      f"mean {s['mean_abs_error_fraction']:.1%}, max {s['max_abs_error_fraction']:.1%}")
        if s["outside_tolerance"]:
            raise typer.Exit(1)
