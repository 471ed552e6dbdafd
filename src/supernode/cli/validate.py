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
        write_track_record: bool = typer.Option(
            False, "--write-track-record",
            help="Also store the inference cases' signed errors as the serving model's track record "
                 "(data/inference/track-record.yaml), which every serving estimate reports beside itself."),
    ) -> None:
        """Run the validation cases; exit 1 when a case is outside its tolerance."""
        from supernode.cli import console, emit_json, get_catalog
        from supernode.train.validation import load_cases, run_case, summary

        from supernode.infer import validation as iv
        from supernode.train.validation import cases_dir

        cat = get_catalog()
        results = [run_case(cat, c) for c in load_cases(cases)]
        s = summary(results)
        inf = [iv.run_case(cat, p) for p in iv.case_files(cases or cases_dir())]
        import numpy as np

        if write_track_record:
            from supernode.infer import track_record

            path = track_record.write(inf)
            if not as_json:
                console().print(f"track record of {len(inf)} inference cases written to {path}")
        all_errs = [abs(r.error_fraction) for r in inf]
        pass_errs = [abs(r.error_fraction) for r in inf if r.expected == "pass"]
        # medians as np.median (mean of the two middle values for an even count), over all cases (the
        # inference target's figure) and over the expected-pass cases alone
        inf_summary = {"cases": len(inf),
                       "median_abs_error_fraction": float(np.median(all_errs)) if all_errs else None,
                       "max_abs_error_fraction": max(all_errs) if all_errs else None,
                       "expected_pass_cases": len(pass_errs),
                       "expected_pass_median_abs_error_fraction": float(np.median(pass_errs)) if pass_errs else None,
                       "expected_pass_max_abs_error_fraction": max(pass_errs) if pass_errs else None,
                       "known_gaps": [r.id for r in inf if r.expected != "pass"],
                       "outside_tolerance": [r.id for r in inf if r.expected == "pass" and not r.within]}
        if as_json:
            emit_json({"inference_cases": [{"id": r.id, "kind": r.kind, "unit": r.unit, "predicted": r.predicted,
                                            "measured": r.measured, "error_fraction": r.error_fraction,
                                            "tolerance": r.tolerance, "within_tolerance": r.within,
                                            "expected_failure": r.expected != "pass"} for r in inf],
                       "inference_summary": inf_summary,
                       "cases": [{"id": r.case.id, "metric": r.case.metric.name, "unit": r.case.metric.unit,
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
            if inf:
                t = Table(title="inference model vs published measurements", title_justify="left")
                for h in ("case", "metric", "predicted", "measured", "error", "tol", "status"):
                    t.add_column(h, justify="left" if h in ("case", "metric", "status") else "right")
                for r in inf:
                    status = "ok" if r.within else ("known gap" if r.expected != "pass" else "OUTSIDE")
                    t.add_row(r.id, r.unit, f"{r.predicted:.4g}", f"{r.measured:.4g}", f"{r.error_fraction:+.1%}",
                              f"{r.tolerance:.0%}", status)
                con.print(t)
                passing = (f"median {inf_summary['expected_pass_median_abs_error_fraction']:.1%}, "
                           f"max {inf_summary['expected_pass_max_abs_error_fraction']:.1%}" if pass_errs else "none")
                con.print(f"{len(inf)} inference cases: median |error| {inf_summary['median_abs_error_fraction']:.1%}, "
                          f"max {inf_summary['max_abs_error_fraction']:.1%}; {len(pass_errs)} expected-pass cases: "
                          f"{passing}; {len(inf_summary['known_gaps'])} known gap(s)")
        if s["outside_tolerance"] or inf_summary["outside_tolerance"]:
            raise typer.Exit(1)
