"""I43: DeepSeek Sparse Attention (DeepSeek-V3.2). Hand-computed weights, cache bytes, attended context and indexer
cost from the reference code's shapes (64 indexer heads of 128 over the Q latent of 1,536; FP8 index keys with an
FP32 scale; top-2,048), and the consequences a user would check: the same as DeepSeek-V3 below 2,048 tokens of
context apart from the indexer, far cheaper decode attention at long context."""

import numpy as np
import pytest

from supernode.errors import CatalogError
from supernode.hardware import resolve_cluster
from supernode.infer import kernels, step
from supernode.infer.arch import serving_arch
from supernode.infer.search import estimate_decode, search
from supernode.infer.serving import SLO, Workload
from supernode.perf import compute
from supernode.workload import flops_per_token, kv_cache_bytes_per_token, load_model, param_count
from supernode.workload.shapes import attended_context, indexer_params

INDEXER = 1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64  # wq_b, wk, k_norm, weights_proj


def test_indexer_weights_by_hand(catalog):
    v32, v3 = load_model(catalog, "deepseek-v3.2"), load_model(catalog, "deepseek-v3")
    assert indexer_params(v32) == INDEXER == 13_959_424 and indexer_params(v3) == 0
    t32, a32 = param_count(v32)
    t3, a3 = param_count(v3)
    assert t32 - t3 == pytest.approx(61 * INDEXER) and a32 - a3 == pytest.approx(61 * INDEXER)


def test_cache_holds_fp8_index_keys_at_any_kv_precision(catalog):
    """Per token and layer: the latent (512 + 64) at the KV precision plus 128 FP8 bytes and one FP32 scale."""
    m = load_model(catalog, "deepseek-v3.2")
    assert kv_cache_bytes_per_token(m, 1.0) == 61 * (576 + 132)
    assert kv_cache_bytes_per_token(m, 2.0) == 61 * (2 * 576 + 132)
    arch = serving_arch(catalog, "deepseek-v3.2")
    assert arch.kv_bytes_per_token(2.0) == 61 * (2 * 576 + 132)
    assert arch.kv_elements_per_token_per_layer == 576 and arch.index_bytes_per_token_per_layer == 132


@pytest.mark.parametrize("s, expected", [(1000, 500), (2048, 1024), (32768, 2048 - 2048 ** 2 / 65536),
                                         (131072, 2048 - 2048 ** 2 / 262144)])
def test_causal_attended_context_is_capped_by_topk(catalog, s, expected):
    assert float(attended_context(load_model(catalog, "deepseek-v3.2"), s)) == pytest.approx(expected)
    assert float(attended_context(load_model(catalog, "deepseek-v3"), s)) == pytest.approx(s / 2)


def test_training_flops_per_token_by_hand(catalog):
    """W5 at s = 8,192: the core over the capped mean context, the indexer over s/2, its three projections."""
    v32, v3 = load_model(catalog, "deepseek-v3.2"), load_model(catalog, "deepseek-v3")
    s = 8192.0
    core = lambda c: 2 * c * 128 * (192 + 128)  # noqa: E731  (prefill MLA widths, one query token)
    idx = 2 * (s / 2) * 64 * 128
    proj = 2 * INDEXER - 2 * 2 * 128  # GEMM FLOPs of wq_b, wk, weights_proj (the LayerNorm is no GEMM)
    expected = flops_per_token(v3, s) + 61 * (core(2048 - 2048 ** 2 / (2 * s)) - core(s / 2) + idx + proj)
    assert flops_per_token(v32, s) == pytest.approx(expected, rel=1e-9)


def _core(catalog, model, ctx, seqs=4.0, q=1.0, chip="h200"):
    arch = serving_arch(catalog, model)
    c = resolve_cluster(catalog, chip, 8).chip
    eff = compute.efficiency(c.family)
    return arch, c, eff, step._attention_core_s(arch, c, eff, np.array([8.0]), seqs, seqs * q, ctx, 0.0, 0.0, 1.0,
                                                "fp8")[0]


def test_decode_attention_below_topk_is_dense_plus_indexer(catalog):
    arch, chip, eff, t32 = _core(catalog, "deepseek-v3.2", 1500.0)
    _, _, _, t3 = _core(catalog, "deepseek-v3", 1500.0)
    flops = 2 * 4 * 1500 * 64 * 128
    bytes_moved = 4 * 1500 * 132 + 8 * 4 * 1500
    idx = kernels.attention_s(chip, eff, flops, bytes_moved, "fp8")
    assert t32 == pytest.approx(t3 + float(idx), rel=1e-9)


def test_long_context_core_reads_only_topk_rows(catalog):
    """At 131,072 tokens the sparse core costs what the dense core costs at 2,048; the indexer streams the whole
    context's index keys (132 of the latent's 576 + 132 bytes per token)."""
    arch, chip, eff, t32 = _core(catalog, "deepseek-v3.2", 131072.0)
    _, _, _, t3_short = _core(catalog, "deepseek-v3", 2048.0)
    _, _, _, t3_long = _core(catalog, "deepseek-v3", 131072.0)
    idx = step._indexer_s(arch, chip, eff, 4.0, 4.0, 131072.0, 0.0, 0.0, "fp8")
    assert t32 == pytest.approx(t3_short + float(np.ravel(idx)[0]), rel=1e-9)
    assert t32 < 0.5 * t3_long


def test_speculative_verify_reads_up_to_q_times_topk_rows(catalog):
    """Two query tokens per sequence select their own top-k: up to 4,096 latent rows per sequence, 2 x 2,048 keys
    each in FLOPs; below 4,096 tokens of context every row is read once."""
    arch, chip, eff, t = _core(catalog, "deepseek-v3.2", 8192.0, q=2.0)
    idx = float(np.ravel(step._indexer_s(arch, chip, eff, 4.0, 8.0, 8192.0, 0.0, 0.0, "fp8"))[0])
    flops = 2 * 8 * 2048 * 128 * (576 + 512) / 8
    kv = 4 * 4096 * 576 * 1.0
    core = kernels.attention_s(chip, eff, flops, kv, "fp8")
    assert t == pytest.approx(float(core) + idx, rel=1e-9)


def test_sparse_attention_needs_mla_with_a_q_latent(tmp_path, catalog):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nname: bad\nsource: deepseek_v32_exp\nlayers: 2\nhidden: 64\nheads: 4\nkv_heads: 4\nffn: 128\n"
        "vocab: 100\nattention: mha\nmlp: swiglu\nsparse_attention: {index_heads: 2, index_head_dim: 16, topk: 8}\n"
        "params: {value: 1.0, unit: count, kind: paper, source: deepseek_v32_exp}\n")
    with pytest.raises(CatalogError, match="sparse_attention needs attention: mla"):
        load_model(catalog, str(bad))


def test_long_prompts_serve_faster_than_dense_attention_short_ones_a_little_slower(catalog):
    """The search on 16 x H200 at TPOT 50 ms: at 65,536-token prompts DeepSeek-V3.2 serves more per chip than
    DeepSeek-V3 (smaller KV reads per step, so larger batches fit the TPOT); at 1,024 its indexer costs a little."""
    def per_chip(model, inp):
        r = search(catalog, model, "h200", 16, workload=Workload(inp, 1024), slo=SLO(tpot_s=0.05), disaggregated=False)
        return r["colocated"]["decode_tokens_per_s_per_chip"]

    assert per_chip("deepseek-v3.2", 65536) > 1.5 * per_chip("deepseek-v3", 65536)
    short32, short3 = per_chip("deepseek-v3.2", 1024), per_chip("deepseek-v3", 1024)
    assert 0.9 * short3 < short32 <= short3


def test_fixed_plan_decode_runs(catalog):
    r = estimate_decode(catalog, "deepseek-v3.2", "h200", 8, context_tokens=32768, batch_per_rank=16, tp=8, pp=1,
                        dp=1, ep=1, precision="fp8", kv_precision="fp8")
    assert r["fits"] and r["decode_tokens_per_s_per_chip"] > 0
