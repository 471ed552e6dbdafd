"""The Hopper training attention fraction re-derived from its published calibration series
(supernode.train.calibration; data/calibration/nemo-h100-llama2-7b-long-sequence.yaml)."""

import numpy as np
import pytest

from supernode.perf.compute import efficiency, efficiency_file
from supernode.train.calibration import fit_attention, nemo_llama_flop_per_token, training_series
from supernode.workload import load_model


@pytest.fixture(scope="module")
def nemo_fit(catalog):
    (series,) = [s for s in training_series() if s.id == "nemo-h100-llama2-7b-long-sequence"]
    return fit_attention(catalog, series)


def test_nemo_flop_formula_matches_published_tokens_per_s(catalog):
    """NeMo 24.07 prints 16,671 tokens/s/GPU for the 4K row whose TFLOPS column says 768, and 2,260 for
    the 128K row at 555 TFLOPS: the non-causal formula links them within 0.2%."""
    m = load_model(catalog, "llama-2-7b")
    assert 768e12 / nemo_llama_flop_per_token(m, 4096) == pytest.approx(16_671, rel=2e-3)
    assert 555e12 / nemo_llama_flop_per_token(m, 131072) == pytest.approx(2_260, rel=2e-3)


def test_fit_reproduces_the_recorded_fraction(nemo_fit):
    recorded = efficiency_file("nvidia-hopper").attention_training_peak_fraction
    assert recorded.source == "nemo_long_sequence_perf"
    assert nemo_fit.fraction == pytest.approx(recorded.value, abs=0.005)
    assert efficiency("nvidia-hopper").attention_training_fraction == recorded.value


def test_two_factor_fit_explains_every_row(nemo_fit):
    """The series separates attention from the rest: the fitted two-factor model is within 2.5% of
    every row, and the rest's factor stays a visible residual (not absorbed into attention)."""
    assert np.max(np.abs(nemo_fit.fitted_error_fraction())) < 0.025
    assert 1.1 < nemo_fit.alpha < 1.3
    assert nemo_fit.beta == pytest.approx(1.0, abs=0.02)  # the recorded fraction is the fixed point


def test_attention_share_grows_along_the_series(nemo_fit):
    share = nemo_fit.attention_s / nemo_fit.modelled_s
    assert np.all(np.diff(share) > 0)
    assert share[0] < 0.3 < 0.8 < share[-1]


def test_serving_attention_fraction_is_separate():
    eff = efficiency("nvidia-hopper")
    assert eff.attention_peak_fraction == efficiency_file("nvidia-hopper").attention_peak_fraction.value
    assert efficiency("nvidia-ampere").attention_training_fraction == efficiency("nvidia-ampere").attention_peak_fraction
