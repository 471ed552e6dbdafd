"""The `supernode` command line: a thin layer over the library.

Every command has ``--json`` (stable snake_case keys, SI units). Exit codes: 0 ok, 1 failure
(e.g. a validation case out of tolerance), 2 usage or input error (one line on stderr).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from supernode.errors import SupernodeError

app = typer.Typer(
    name="supernode",
    help="What an AI compute system really delivers: sourced catalog, training/inference model, export rules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE: dict[str, Any] = {"catalog_dirs": []}


@app.callback()
def _root(
    catalog: Optional[list[Path]] = typer.Option(
        None, "--catalog", help="Overlay catalog directory (chips/, systems/, sources/ ...); repeatable. "
        "Also read from $SUPERNODE_CATALOG."),
) -> None:
    _STATE["catalog_dirs"] = list(catalog or [])


def get_catalog():
    """The catalog with the user's overlays (built-in + $SUPERNODE_CATALOG + --catalog)."""
    from supernode.catalog import load_catalog

    return load_catalog(_STATE["catalog_dirs"])


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _clean(obj.item())
    return obj


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def console():
    from rich.console import Console

    return Console(soft_wrap=False, width=max(160, Console().width))


def chips_label(res: dict) -> str:
    """``N x chip`` of a training or serving result, with its device count where a chip is several runtime devices
    (I40: plans count devices, per-chip figures are per chip)."""
    label = f"{res['chips']} x {res['chip']}"
    if res.get("devices_per_chip", 1) > 1:
        label += (f" = {res['devices']:,} devices, {res['devices_per_chip']} per chip: plans count devices, per-chip "
                  "figures are per chip")
    return label


def fail(message: str, code: int = 2) -> None:
    """One-line error on stderr and exit."""
    sys.stderr.write(f"supernode: error: {message}\n")
    raise typer.Exit(code)


from supernode.cli import catalog_cmds as _catalog_cmds  # noqa: E402

_catalog_cmds.register(app)

for _mod in ("comply", "train", "infer", "validate"):
    try:
        _m = __import__(f"supernode.cli.{_mod}", fromlist=["register"])
    except ModuleNotFoundError as _exc:  # command not built yet
        if _exc.name != f"supernode.cli.{_mod}":
            raise
        continue
    _m.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="supernode", standalone_mode=True)
    except SupernodeError as exc:
        sys.stderr.write(f"supernode: error: {exc}\n")
        return exc.exit_code
    except SystemExit as exc:  # typer/click exit
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        return 130
    return 0


def _entry() -> None:
    sys.exit(main())
