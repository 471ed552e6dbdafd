"""I35: prefill (context) attention in serving runs at fractions fitted on published prefill attention kernel tables
(data/attention-kernels; supernode.perf.calibration.fit_attention_prefill_fraction), per family and precision, with
own values for the chips whose attention datapath differs (Blackwell Ultra, H20)."""

import numpy as np
import pytest

from supernode.catalog.loader import parse_item
from supernode.errors import CatalogError
from supernode.hardware import resolve_cluster
from supernode.infer import kernels
from supernode.perf import calibration as cal
from supernode.perf.compute import attention_time_s, efficiency, efficiency_file

GROUPS = [("nvidia-blackwell", None), ("nvidia-blackwell", "b300"), ("nvidia-blackwell", "gb300"),
          ("nvidia-hopper", None), ("nvidia-hopper", "h20")]


def _own_chips(family):
    return frozenset(efficiency_file(family).chip_attention_prefill_peak_fraction)


def _group_chips(family, chip):
    """The chips a recorded value is fitted on: a chip's own value on every chip sharing it (b300 and gb300 share
    one), the family's on the family's chips without an own value (None: the fit's default)."""
    if chip is None:
        return None
    own = {c: {p: f.value for p, f in fs.items()}
           for c, fs in efficiency_file(family).chip_attention_prefill_peak_fraction.items()}
    return frozenset(c for c, f in own.items() if f == own[chip])


def test_attention_tables_load_and_cite_sources(catalog):
    tables = cal.attention_tables()
    assert len(tables) >= 80
    for t in tables:
        assert t.source in catalog.sources and t.chip in catalog.chips, t.id
        assert t.columns == ["batch", "q_len", "kv_len", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v",
                             "time_us", "tflop_per_s"], t.id


@pytest.mark.parametrize("family,chip", GROUPS)
def test_recorded_fractions_are_the_fit_on_the_tables(catalog, family, chip):
    data = efficiency_file(family)
    recorded = data.attention_prefill_peak_fraction if chip is None else data.chip_attention_prefill_peak_fraction[chip]
    for prec, factor in recorded.items():
        fitted = cal.fit_attention_prefill_fraction(catalog, family, prec, _group_chips(family, chip))
        assert factor.value == pytest.approx(fitted, abs=0.006), (family, chip, prec)
        assert factor.kind == "derived"


def test_every_table_row_with_time_and_rate_agrees_with_the_model_flop_count():
    """Where a source prints both the kernel time and its TFLOP/s for a square (q_len = kv_len) row, the model's FLOP
    count (K3, causal halved) over the time gives the printed rate within 2%: the shapes are transcribed right."""
    checked = 0
    for t in cal.attention_tables():
        col = {c: i for i, c in enumerate(t.columns)}
        for r in t.rows:
            if None in (r[col["time_us"]], r[col["tflop_per_s"]]) or r[col["q_len"]] != r[col["kv_len"]]:
                continue
            rate = cal.attention_row_flops(t, r) / (float(r[col["time_us"]]) * 1e-6) / 1e12
            assert rate == pytest.approx(float(r[col["tflop_per_s"]]), rel=0.02), (t.id, r)
            checked += 1
    assert checked > 300


def test_the_model_prices_the_fit_rows_within_a_fifth_at_the_median(catalog):
    errs = []
    for t in cal.attention_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        eff = efficiency(chip.family)
        col = {c: i for i, c in enumerate(t.columns)}
        for r in t.rows:
            if min(float(r[col["q_len"]]), float(r[col["kv_len"]])) < cal.ATTENTION_MIN_TOKENS:
                continue
            t_model = attention_time_s(chip, eff, cal.attention_row_flops(t, r), t.precision, fp8_attention=True,
                                       prefill=True)
            errs.append(float(t_model) / cal.attention_row_time_s(t, r) - 1.0)
    errs = np.abs(errs)
    assert len(errs) > 500 and np.median(errs) < 0.20


def test_a_rate_only_causal_row_counted_full_by_its_source_is_converted():
    """A causal row whose source counts the whole s_q x s_kv square (tflop_convention full) takes twice the time of the
    same printed rate under the halved count, for a square row."""
    base = dict(id="x", description="d", source="s", chip="h100", precision="bf16", attention="mha", causal=True,
                flop_convention="c", columns=["batch", "q_len", "kv_len", "heads_q", "heads_kv", "head_dim_qk",
                                              "head_dim_v", "time_us", "tflop_per_s"],
                rows=[[1, 4096, 4096, 32, 8, 128, 128, None, 500.0]])
    halved = cal.AttentionKernelTable(**base)
    full = cal.AttentionKernelTable(**base, tflop_convention="full")
    t_h = cal.attention_row_time_s(halved, halved.rows[0])
    assert cal.attention_row_time_s(full, full.rows[0]) == pytest.approx(2 * t_h)
    assert t_h == pytest.approx(2 * 4096 * 2048 * 32 * 256 / 500e12)


def test_chip_values_fallbacks_and_families_without_tables():
    bw, hop = efficiency("nvidia-blackwell"), efficiency("nvidia-hopper")
    assert bw.attention_prefill_fraction("fp8", "gb300") == 0.60
    assert bw.attention_prefill_fraction("fp8", "b200") == 0.43
    assert bw.attention_prefill_fraction("fp16", "gb200") == bw.attention_prefill_fraction("bf16", "gb200") == 0.55
    # the H20 has an own BF16 value only: its FP8 value is that times the family's FP8 / BF16 ratio
    assert hop.attention_prefill_fraction("fp8", "h20") == pytest.approx(0.77 * 0.36 / 0.57)
    cdna3 = efficiency("amd-cdna3")  # no tables: the serving attention fraction
    assert cdna3.attention_prefill_fraction("bf16", "mi300x") == cdna3.attention_peak_fraction
    assert _own_chips("nvidia-blackwell") == {"b300", "gb300"} and _own_chips("nvidia-hopper") == {"h20"}


def test_serving_attention_prices_prompt_flops_at_the_prefill_fraction_and_decode_flops_at_the_serving_one(catalog):
    chip = resolve_cluster(catalog, "b200", 1).chip
    eff = efficiency(chip.family)
    f = 1e12
    t_pre = float(kernels.attention_s(chip, eff, 0.0, 0.0, "bf16", prefill_flops=f))
    t_dec = float(kernels.attention_s(chip, eff, f, 0.0, "bf16"))
    assert t_pre == pytest.approx(f / (chip.peak("bf16") * 0.55))
    assert t_dec == pytest.approx(f / (chip.peak("bf16") * eff.attention_peak_fraction))
    # training attention keeps its own fraction
    assert float(attention_time_s(chip, eff, f, "bf16", training=True)) == pytest.approx(
        f / (chip.peak("bf16") * eff.attention_training_fraction))


def test_a_malformed_table_is_a_one_line_error_naming_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("id: bad\ndescription: d\nsource: s\nchip: b200\nprecision: fp4\nattention: mha\ncausal: true\n"
                 "flop_convention: c\ncolumns: [batch]\nrows: [[1]]\n")
    with pytest.raises(CatalogError) as e:
        parse_item(p, cal.AttentionKernelTable)
    assert str(p) in str(e.value) and "precision" in str(e.value) and "\n" not in str(e.value)


def test_the_assumptions_name_the_prefill_attention_fractions():
    line = efficiency("nvidia-blackwell").assumptions[0]
    assert "prefill attention fractions of peak (I35): bf16 0.55, fp8 0.43" in line
    assert "chips' own: b300 bf16 0.64; b300 fp8 0.60; gb300 bf16 0.64; gb300 fp8 0.60" in line
    assert "I35" not in efficiency("amd-cdna3").assumptions[0]
