"""In-test chips and a catalog holding them plus the shipped rule and source files.

The chip figures are those of rules.md part F (sources in accelerators.yaml); they let the rule
tests run without the catalog's chip files.
"""

from __future__ import annotations

import supernode.rules  # noqa: F401  (registers the rules kind)
from supernode.catalog.loader import Catalog, builtin_dir, parse_item
from supernode.catalog.schema import Chip, Source
from supernode.rules.schema import Rule

SRC = "toms_h20_l20"


def q(value, unit, source=SRC, kind="spec"):
    return {"value": value, "unit": unit, "kind": kind, "source": source}


def unknown(unit):
    return {"value": None, "unit": unit, "reason": "not published"}


def bw(value, direction="bidirectional", per="chip", links=None, unit="GB/s"):
    d = {"value": value, "unit": unit, "kind": "spec", "source": SRC, "direction": direction, "per": per}
    if links:
        d["links"] = links
    return d


def chip(chip_id, *, compute, mem_bw, scale_up=None, host=128, die_area=None, vendor="NVIDIA", datacenter=True,
         unsupported=()):
    data = {
        "id": chip_id, "name": chip_id, "vendor": vendor, "family": "test", "status": "shipping",
        "datacenter": datacenter, "compute_dense": compute, "unsupported_precisions": list(unsupported),
        "memory": {"type": "HBM", "capacity": q(80, "GB"),
                   "bandwidth": q(mem_bw, "GB/s") if mem_bw is not None else unknown("GB/s")},
    }
    if scale_up is not None:
        data["scale_up"] = {"tech": "NVLink", "bandwidth": scale_up}
    if host is not None:
        data["host_interface"] = {"tech": "PCIe", "bandwidth": bw(host)}
    if die_area is not None:
        data["silicon"] = {"die_area": q(die_area, "mm2") if die_area != "unknown" else unknown("mm2")}
    return Chip.model_validate(data)


def h20():
    return chip("h20", compute={"fp8": q(296, "TFLOP/s"), "int8": q(296, "TOP/s"), "bf16": q(148, "TFLOP/s"),
                                "fp16": q(148, "TFLOP/s"), "tf32": q(74, "TFLOP/s"), "fp32": q(44, "TFLOP/s")},
                mem_bw=4000, scale_up=bw(900), host=128, die_area=814, unsupported=["fp4", "fp6", "int4"])


def h100():
    return chip("h100", compute={"fp8": q(1979, "TFLOP/s"), "bf16": q(989.5, "TFLOP/s"), "tf32": q(494.5, "TFLOP/s")},
                mem_bw=3350, scale_up=bw(900), host=128, die_area=814)


def h800():
    return chip("h800", compute={"fp8": q(1979, "TFLOP/s"), "bf16": q(989.5, "TFLOP/s")},
                mem_bw=3350, scale_up=bw(400), host=128, die_area=814)


def a100():
    return chip("a100", compute={"int8": q(624, "TOP/s"), "bf16": q(312, "TFLOP/s"), "tf32": q(156, "TFLOP/s")},
                mem_bw=2039, scale_up=bw(600), host=64, die_area=826)


def a800():
    return chip("a800", compute={"int8": q(624, "TOP/s"), "bf16": q(312, "TFLOP/s"), "tf32": q(156, "TFLOP/s")},
                mem_bw=2039, scale_up=bw(400), host=64, die_area=826)


def l20():
    return chip("l20", compute={"fp8": q(239, "TFLOP/s"), "bf16": q(119.5, "TFLOP/s"), "tf32": q(59.8, "TFLOP/s"),
                                "fp32": q(59.8, "TFLOP/s")},
                mem_bw=864, scale_up=None, host=64, die_area=608.5)


def rtx_pro_6000d():
    return chip("rtx-pro-6000d", compute={"fp8": unknown("TFLOP/s"), "bf16": unknown("TFLOP/s")},
                mem_bw=1398, scale_up=None, host=128, die_area=750)


def tpu_v5e():  # TPP in the PD-decided band, die area unpublished
    return chip("tpu-v5e", vendor="Google", compute={"bf16": q(197, "TFLOP/s")}, mem_bw=819,
                scale_up=bw(400), host=None, die_area="unknown")


def ascend_910b():
    return chip("ascend-910b", vendor="Huawei", compute={"int8": q(640, "TOP/s"), "fp16": q(320, "TFLOP/s")},
                mem_bw=1600, scale_up=bw(392), host=None, die_area=665.61)


ALL = (h20, h100, h800, a100, a800, l20, rtx_pro_6000d, tpu_v5e, ascend_910b)


def rules_catalog(chips=ALL) -> Catalog:
    """A catalog of the given in-test chips with the shipped rules and sources."""
    cat = Catalog()
    root = builtin_dir()
    for path in sorted((root / "sources").glob("*.yaml")):
        s = parse_item(path, Source)
        cat.sources[s.id] = s
    table = cat.extra.setdefault("rules", {})
    for path in sorted((root / "rules").glob("*.yaml")):
        r = parse_item(path, Rule)
        table[r.id] = r
        cat.paths[("rules", r.id)] = path
    for make in chips:
        c = make()
        cat.chips[c.id] = c
    return cat
