"""Activation traffic of the non-GEMM kernels (docs/inference.md I22; infer/glue.py): hand-counted bytes per
token for Llama-3.1-70B, (I30) a Mixtral MoE FFN and (I31) DeepSeek's MLA attention side, what is and is not
priced (16-bit GEMMs, chips without the format), the price at the family's HBM streaming rate, and its size against
the GEMMs on B200 and H200."""

from __future__ import annotations

import numpy as np
import pytest

from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.infer import glue, kernels, serving_arch
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import module_formats
from supernode.infer.step import stage_time

CAT = load_catalog(use_env=False)
LLAMA = serving_arch(CAT, "llama-3.1-70b")
DS = serving_arch(CAT, "deepseek-r1")
ALL = ("bf16", "fp16", "fp8", "int8", "fp4")


def one(tp=1):
    return PlanGrid(tp=np.array([tp]), pp=1, dp=1, ep=1, batch=1, overlap=0)


def test_llama70b_nvfp4_bytes_per_token_by_hand():
    # h 8192, 64 query and 8 KV heads of 128, FFN 28,672 (SwiGLU); NVFP4 input: 2 read + 0.5 + 1/16 written
    q4 = 2 + 0.5 + 1 / 16
    attn = 8 * 8192 * 2 + (80 * 128 * 2 + 64 * 128 * 2 + 2 * 8 * 128 * 1) + q4 * (8192 + 8192)
    ffn = 3 * 28672 * 2 + q4 * (8192 + 28672)
    fm = module_formats("fp4")
    assert glue.attention_side_bytes_per_token(LLAMA, fm, ALL, np.array([1.0]), 1.0)[0] == pytest.approx(attn)
    assert glue.dense_ffn_bytes_per_token(LLAMA, fm, ALL, np.array([1.0]))[0] == pytest.approx(ffn)
    assert attn + ffn == pytest.approx(478_464)
    total = glue.stage_bytes(LLAMA, fm, ALL, np.array([1.0]), 1.0, 1000.0, 80, 0)
    assert total[0] == pytest.approx(1000 * 80 * (attn + ffn))


def test_tensor_parallelism_splits_the_head_and_ffn_parts_not_the_norms():
    fm = module_formats("fp8")
    a1, a8 = (glue.attention_side_bytes_per_token(LLAMA, fm, ALL, np.array([t]), 1.0)[0] for t in (1.0, 8.0))
    f1, f8 = (glue.dense_ffn_bytes_per_token(LLAMA, fm, ALL, np.array([t]))[0] for t in (1.0, 8.0))
    norms = 8 * 8192 * 2
    assert a8 > norms and a8 < a1
    assert a1 - norms == pytest.approx((80 * 128 * 2 + 64 * 128 * 2 + 2 * 8 * 128) + 3 * (8192 + 8192))
    # FFN side: the activation and the down input split 8 ways, the up input (hidden) does not
    assert f8 == pytest.approx(3 * 3584 * 2 + 3 * (8192 + 3584))
    assert f1 > f8


def test_sixteen_bit_gemms_and_chips_without_the_format_have_no_quantization_kernels():
    t = np.array([1.0])
    bf = glue.dense_ffn_bytes_per_token(LLAMA, module_formats("bf16"), ALL, t)[0]
    assert bf == pytest.approx(3 * 28672 * 2)
    no_fp8 = glue.dense_ffn_bytes_per_token(LLAMA, module_formats("fp8"), ("bf16", "fp16", "int8"), t)[0]
    assert no_fp8 == pytest.approx(bf)
    fp8 = glue.dense_ffn_bytes_per_token(LLAMA, module_formats("fp8"), ALL, t)[0]
    assert fp8 - bf == pytest.approx(3 * (8192 + 28672))


def test_moe_ffns_are_priced_only_when_asked():
    fm = module_formats("fp8")
    t = np.array([1.0])
    assert glue.priced(DS) and glue.priced(LLAMA)
    # without the MoE arguments DeepSeek's MoE layers get their attention side only
    no_moe = glue.stage_bytes(DS, fm, ALL, t, 1.0, 10.0, DS.dense_layers, DS.moe_layers)[0]
    attn = glue.attention_side_bytes_per_token(DS, fm, ALL, t, 1.0)[0]
    dense = glue.dense_ffn_bytes_per_token(DS, fm, ALL, t)[0]
    assert no_moe == pytest.approx(10.0 * (DS.dense_layers * (attn + dense) + DS.moe_layers * attn))
    moe = (np.array([1.0]), np.array([1.0]), np.array([8.0]))
    both = glue.stage_bytes(DS, fm, ALL, t, 1.0, 10.0, DS.dense_layers, DS.moe_layers, None, moe)[0]
    assert both == pytest.approx(no_moe + 10.0 * DS.moe_layers * glue.moe_ffn_bytes_per_token(
        DS, fm, ALL, t, *moe)[0])


def test_mla_attention_side_bytes_per_token_by_hand():
    """I31, DeepSeek-R1 at FP8 (h 7,168, 128 heads, q_lora 1,536, kv_lora 512, rope 64, v 128), FP8 KV cache: the
    norms (8 h x 2), the latent projections' input quantized once (h x 3), the latent norms (2 x (1,536 + 512) x 2),
    q_b's input quantized (1,536 x 3), RoPE on 128/t query heads' and the shared key's 64 dims (read and write, x 2),
    the latent cache write (576 x 1) and o_proj's input quantized (128/t x 128 x 3): 231,744 bytes at TP1, 160,064
    at TP8; with trtllm-1.0 and the 8-bit cache o_proj's quantization is the attention kernel's."""
    fm = module_formats("fp8")
    h = 7168

    def by_hand(t, o_proj=True):
        return (8 * h * 2 + h * 3 + 2 * (1536 + 512) * 2 + 1536 * 3 + 2 * (128 / t * 64 + 64) * 2 + 576
                + (128 / t * 128 * 3 if o_proj else 0))
    for t in (1, 8):
        assert glue.attention_side_bytes_per_token(DS, fm, ALL, np.array([float(t)]), 1.0)[0] == pytest.approx(
            by_hand(t))
    assert by_hand(1) == 231_744 and by_hand(8) == 160_064
    assert glue.attention_side_bytes_per_token(DS, fm, ALL, np.array([1.0]), 1.0, "trtllm-1.0")[0] == pytest.approx(
        by_hand(1, o_proj=False))
    bf16 = glue.attention_side_bytes_per_token(DS, module_formats("bf16"), ALL, np.array([1.0]), 2.0)[0]
    assert bf16 == pytest.approx(8 * h * 2 + 2 * (1536 + 512) * 2 + 2 * (128 * 64 + 64) * 2 + 576 * 2)


MIXTRAL = serving_arch(CAT, "mixtral-8x7b")


def test_moe_ffn_bytes_per_token_by_hand():
    """I30, Mixtral 8x7B at FP8 on one chip (h 4,096, expert FFN 14,336, SwiGLU, top-2, no shared experts), no
    dispatch kernel: the input's FP8 quantization once per token (h x 3), per routed copy the activation (read
    2F x 2, write F x 2) and the down input's quantization (F x 3), and the combine (read 2h x 2, write h x 2):
    294,912 bytes per token. With a dispatch kernel (attention DP) only the copies' part is left; a 16-bit expert
    format drops the quantizations; fusion trtllm-1.0 writes the down input from the activation at FP8."""
    fm = module_formats("fp8")
    one_chip = (np.array([1.0]), np.array([1.0]), np.array([2.0]))
    h, f = 4096, 14336
    per_copy = 2 * f * 2 + f * 2 + f * 3
    assert glue.moe_ffn_bytes_per_token(MIXTRAL, fm, ALL, np.array([1.0]), *one_chip)[0] == pytest.approx(
        h * 3 + 2 * per_copy + 2 * h * 2 + h * 2)
    assert h * 3 + 2 * per_copy + 2 * h * 2 + h * 2 == 294_912
    dispatched = (np.array([8.0]), np.array([1.0]), np.array([2.0]))
    assert glue.moe_ffn_bytes_per_token(MIXTRAL, fm, ALL, np.array([1.0]), *dispatched)[0] == pytest.approx(
        2 * per_copy)
    bf16 = glue.moe_ffn_bytes_per_token(MIXTRAL, module_formats("bf16"), ALL, np.array([1.0]), *one_chip)[0]
    assert bf16 == pytest.approx(2 * (2 * f * 2 + f * 2) + 2 * h * 2 + h * 2)
    fused = glue.moe_ffn_bytes_per_token(MIXTRAL, fm, ALL, np.array([1.0]), *one_chip, "trtllm-1.0")[0]
    assert fused == pytest.approx(h * 3 + 2 * (2 * f * 2 + f * 1) + 2 * h * 2 + h * 2)
    # an expert TP split divides the copies' width; a dense model has no MoE glue
    split = glue.moe_ffn_bytes_per_token(MIXTRAL, fm, ALL, np.array([1.0]), np.array([1.0]), np.array([2.0]),
                                         np.array([2.0]))[0]
    assert split == pytest.approx(h * 3 + per_copy + 2 * h * 2 + h * 2)
    assert glue.moe_ffn_bytes_per_token(LLAMA, fm, ALL, np.array([1.0]), *one_chip)[0] == 0.0


def test_moe_glue_enters_the_stage_in_proportion_to_the_routed_copies(monkeypatch):
    """The stage prices the MoE glue of the copies its chip processes: at expert parallelism 2 over two attention
    ranks (dispatch kernel) a chip runs half of the group's 2 x 2 copies per rank token, so its glue per token is
    that of two copies, priced at the family's glue rate."""
    c = resolve_cluster(CAT, "h200", 8)
    base = dict(precision="fp8", kv_precision_bytes=1.0, decode_seqs=0.0, context_tokens=0.0, prefill_tokens=4096.0,
                prefill_len=4096.0)
    dp2 = PlanGrid(tp=np.array([1]), pp=1, dp=np.array([2]), ep=np.array([2]), batch=1, overlap=0)
    with_glue = float(stage_time(MIXTRAL, c, dp2, **base).gemm_s[0])
    eff = kernels.efficiency(c)
    per_tok = 2 * (2 * 14336 * 2 + 14336 * 2 + 14336 * 3)
    expected_s = 4096.0 * MIXTRAL.moe_layers * per_tok / (c.chip.memory_bandwidth_bytes_per_s * eff.glue_fraction)
    monkeypatch.setattr(glue, "moe_ffn_bytes_per_token", lambda *a, **k: np.zeros(1))
    without = float(stage_time(MIXTRAL, c, dp2, **base).gemm_s[0])
    assert with_glue - without == pytest.approx(expected_s, rel=1e-9)


def test_glue_bytes_are_priced_at_the_family_glue_rate():
    """1 GB of glue traffic on a B200 (8 TB/s, glue fraction 0.56) adds 1e9 / (8e12 x 0.56) s = 223 us to the
    kernel floors."""
    c = resolve_cluster(CAT, "b200", 1)
    eff = kernels.efficiency(c)
    floors = kernels.aux_kernels_s(eff, 80, 0)
    priced = kernels.aux_kernels_s(eff, 80, 0, c.chip, 1e9)
    assert float(priced - floors) == pytest.approx(223.2e-6, rel=1e-3)
    bw = c.chip.memory_bandwidth_bytes_per_s * eff.glue_fraction
    assert priced - floors == pytest.approx(1e9 / bw)
    assert kernels.aux_kernels_s(eff, 80, 0, c.chip, 0.0) == pytest.approx(floors)


@pytest.mark.parametrize("system,prec,lo,hi", [("b200", "fp4", 0.15, 0.45), ("h200", "fp8", 0.04, 0.15)])
def test_glue_share_of_a_prefill_stage(system, prec, lo, hi):
    """A 2,048-token Llama-70B prefill at TP1: the glue adds 15-45% to B200 NVFP4 GEMM time, 4-15% on H200 FP8
    (B200's GEMMs are ~4.7x faster, its HBM 1.7x): the reason B200 FP4 serving was over-predicted."""
    c = resolve_cluster(CAT, system, 1)
    eff = kernels.efficiency(c)
    br = stage_time(LLAMA, c, one(), precision=prec, kv_precision_bytes=1.0, decode_seqs=0.0, context_tokens=0.0,
                    prefill_tokens=2048.0, prefill_len=2048.0)
    g = kernels.aux_kernels_s(eff, 80, 0, c.chip, glue.stage_bytes(LLAMA, module_formats(prec), tuple(
        c.chip.peak_flop_per_s), np.array([1.0]), 1.0, 2048.0, 80, 0)) - kernels.aux_kernels_s(eff, 80, 0)
    share = float(g[0]) / float(br.gemm_s[0] - g[0])
    assert lo < share < hi


def test_trtllm_profile_drops_the_o_proj_quantization_only_with_an_8bit_kv_cache():
    fm, t = module_formats("fp4"), np.array([1.0])
    unf = glue.attention_side_bytes_per_token(LLAMA, fm, ALL, t, 1.0)[0]
    trt = glue.attention_side_bytes_per_token(LLAMA, fm, ALL, t, 1.0, "trtllm-1.0")[0]
    assert unf - trt == pytest.approx((2 + 0.5 + 1 / 16) * 8192)
    bf16_kv = glue.attention_side_bytes_per_token(LLAMA, fm, ALL, t, 2.0, "trtllm-1.0")[0]
    assert bf16_kv == pytest.approx(glue.attention_side_bytes_per_token(LLAMA, fm, ALL, t, 2.0)[0])
    # 457 KB per token and layer for TensorRT-LLM 1.0's NVFP4 Llama-70B at TP1 (478 KB unfused)
    total = trt + glue.dense_ffn_bytes_per_token(LLAMA, fm, ALL, t, "trtllm-1.0")[0]
    assert total == pytest.approx(478_464 - 2.5625 * 8192)


def test_trtllm_profile_fuses_the_fp8_activation_with_its_quantization_not_the_fp4_one():
    t = np.array([1.0])
    f8 = glue.dense_ffn_bytes_per_token(LLAMA, module_formats("fp8"), ALL, t, "trtllm-1.0")[0]
    # SwiGLU reads 2F BF16 and writes F at FP8; the up input still has its own quantization (3 bytes per element)
    assert f8 == pytest.approx(2 * 28672 * 2 + 28672 * 1 + 3 * 8192)
    f4 = glue.dense_ffn_bytes_per_token(LLAMA, module_formats("fp4"), ALL, t, "trtllm-1.0")[0]
    assert f4 == pytest.approx(glue.dense_ffn_bytes_per_token(LLAMA, module_formats("fp4"), ALL, t)[0])


def test_unknown_fusion_profile_is_a_one_line_error():
    from supernode.errors import UsageError

    with pytest.raises(UsageError, match="--glue-fusion"):
        glue.profile("bogus")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "supernode", "infer", "llama-3.1-70b", "--on", "h200", "--chips", "1",
                          "--glue-fusion", "bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--glue-fusion" in out.stderr


def test_every_profile_has_its_evidence():
    for name in glue.fusion_profiles():
        p = glue.profile(name)
        assert len(p.evidence) > 100 and set(p.activation_quantized_formats) <= set(glue.QUANTIZED_FORMATS)


def test_glue_bandwidth_fraction_is_the_fit_on_the_glue_kernel_tables():
    """I22's glue-kernel fraction of each family with tables equals its re-derivation from data/glue-kernels
    (median over sources of each source's median achieved / nominal bandwidth at >= 2,048 tokens); it fails
    when the data or the stored value moves. A family without tables falls back to its streaming fraction."""
    from supernode.perf.calibration import fit_glue_bandwidth_fraction, glue_fractions_by_source, glue_tables
    from supernode.perf.compute import efficiency

    cat = load_catalog()
    for t in glue_tables():
        assert t.source in cat.sources, t.id
        assert t.chip in cat.chips, t.id
    for family, n_sources in (("nvidia-blackwell", 6), ("nvidia-hopper", 5)):
        assert len(glue_fractions_by_source(cat, family)) == n_sources
        assert efficiency(family).glue_fraction == pytest.approx(fit_glue_bandwidth_fraction(cat, family), abs=0.005)
    assert efficiency("nvidia-blackwell").glue_fraction < efficiency("nvidia-blackwell").memory_bandwidth_fraction
    with pytest.raises(ValueError, match="no glue-kernel tables"):
        fit_glue_bandwidth_fraction(cat, "amd-cdna3")
    cdna3 = efficiency("amd-cdna3")
    assert cdna3.glue_fraction == cdna3.memory_bandwidth_fraction

