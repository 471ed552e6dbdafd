"""Parameter counts and FLOP/KV accounting against published figures (sources in the model files)."""

import pytest

from supernode.workload import (flops_per_token, kv_cache_bytes_per_token, layer_gemms, load_model, models,
                                param_count, published_param_count)

PUBLISHED = {  # id: (total, active, relative tolerance)
    "gpt3-175b": (175e9, None, 0.01),
    "llama-2-7b": (6_738_415_616, None, 0.0005),
    "llama-2-70b": (68.98e9, None, 0.005),
    "llama-3.1-8b": (8.03e9, None, 0.005),
    "llama-3.1-70b": (70.55e9, None, 0.005),
    "llama-3.1-405b": (405.85e9, None, 0.005),
    "qwen2.5-72b": (72.7e9, None, 0.005),
    "qwen3-235b-a22b": (235e9, 22e9, 0.02),
    "qwen3-coder-480b-a35b": (480e9, 35e9, 0.02),
    "mixtral-8x7b": (46.7e9, 12.9e9, 0.01),
    "deepseek-v3": (671e9, 37e9, 0.02),
    "deepseek-r1": (671e9, 37e9, 0.02),
    "kimi-k2": (1.0e12, 32e9, 0.03),  # 1.026T / 32.9B with embeddings and head (the card's "1T" / "32B")
    "glm-4.7": (355e9, 32e9, 0.02),  # non-embedding, MTP included: 355.2B / 32.5B (report Table 1)
}


@pytest.mark.parametrize("mid", sorted(PUBLISHED))
def test_param_count_matches_published(catalog, mid):
    total, active, tol = PUBLISHED[mid]
    t, a = published_param_count(load_model(catalog, mid))
    assert t == pytest.approx(total, rel=tol)
    if active:
        assert a == pytest.approx(active, rel=tol)


def test_every_catalog_model_matches_its_own_published_count(catalog):
    for mid, m in models(catalog).items():
        t, a = published_param_count(m)
        assert t == pytest.approx(m.params.number, rel=0.03), mid
        if m.active_params is not None:
            assert a == pytest.approx(m.active_params.number, rel=0.03), mid


def test_non_embedding_convention_drops_embeddings_and_adds_mtp(catalog):
    """GLM-4.5's published 355B / 32B count neither the embedding nor the output head and include the MTP layer:
    counted with them (param_count) the record is 352.8B / 33.6B, 5% above the published active count."""
    m = load_model(catalog, "glm-4.7")
    assert m.params_convention == "non-embedding"
    t_all, a_all = param_count(m)
    t_pub, a_pub = published_param_count(m)
    t_mtp, a_mtp = param_count(m, include_mtp=True)
    emb = 2 * m.vocab * m.hidden
    assert t_pub == pytest.approx(t_mtp - emb) and a_pub == pytest.approx(a_mtp - emb)
    assert a_all / 32e9 - 1 > 0.04 and abs(a_pub / 32e9 - 1) < 0.02 and abs(t_pub / 355e9 - 1) < 0.001


def test_deepseek_mtp_adds_about_14b(catalog):
    m = load_model(catalog, "deepseek-v3")
    t0, _ = param_count(m)
    t1, _ = param_count(m, include_mtp=True)
    assert 11e9 < t1 - t0 < 15e9  # paper: 671B main + 14B MTP (incl. shared embedding copies)


def test_flops_per_token_is_2n_plus_attention(catalog):
    m = load_model(catalog, "llama-3.1-8b")
    total, _ = param_count(m)
    matmul = total - m.vocab * m.hidden  # input embedding is a lookup
    attn = m.layers * 2 * (2048 / 2) * m.heads * 2 * m.d_head
    assert flops_per_token(m, 2048) == pytest.approx(2 * matmul + attn, rel=1e-3)


def test_layer_gemm_flops_hand_checked(catalog):
    m = load_model(catalog, "megatron-gpt-1.7b")  # GPT: 24 T D^2 forward per layer
    g = layer_gemms(m, 1000, "dense")
    assert sum(x.flops for x in g) == pytest.approx(24 * 1000 * m.hidden ** 2)
    g8 = layer_gemms(m, 1000, "dense", tp=8)
    assert sum(x.flops for x in g8) == pytest.approx(24 * 1000 * m.hidden ** 2 / 8)


def test_moe_expert_flops_independent_of_ep(catalog):
    m = load_model(catalog, "mixtral-8x7b")
    f1 = sum(x.flops for x in layer_gemms(m, 4096, "moe", 1, 1) if x.kind == "expert")
    f8 = sum(x.flops for x in layer_gemms(m, 4096, "moe", 1, 8) if x.kind == "expert")
    assert f1 == pytest.approx(f8) == pytest.approx(4096 * 2 * 3 * 2 * m.hidden * m.moe.expert_ffn)


def test_kv_cache_bytes(catalog):
    ll = load_model(catalog, "llama-3.1-70b")
    assert kv_cache_bytes_per_token(ll, 2) == 2 * 80 * 8 * 128 * 2  # 327,680 B/token
    ds = load_model(catalog, "deepseek-v3")
    assert kv_cache_bytes_per_token(ds, 2) == 61 * (512 + 64) * 2  # MLA latent + rope key


def test_model_from_yaml_path(catalog, tmp_path):
    src = catalog.path("models", "llama-3.1-8b")
    p = tmp_path / "mine.yaml"
    p.write_text(src.read_text().replace("id: llama-3.1-8b", "id: mine"))
    assert load_model(catalog, str(p)).id == "mine"


def test_unknown_model_is_usage_error(catalog):
    from supernode.errors import UsageError

    with pytest.raises(UsageError, match="MODEL"):
        load_model(catalog, "llama-9")
