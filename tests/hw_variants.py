"""Cluster variants for monotonicity tests: the same cluster with one resource scaled up."""

from dataclasses import replace


def faster_variants(cl, scale: float) -> list:
    """``cl`` with (memory bandwidth, every peak FLOP/s rate, every tier's link bandwidth) x ``scale``, one each."""
    chip = cl.chip
    return [replace(cl, chip=replace(chip, memory_bandwidth_bytes_per_s=chip.memory_bandwidth_bytes_per_s * scale)),
            replace(cl, chip=replace(chip, peak_flop_per_s={k: v * scale for k, v in chip.peak_flop_per_s.items()})),
            replace(cl, tiers=tuple(replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * scale)
                                    for t in cl.tiers))]
