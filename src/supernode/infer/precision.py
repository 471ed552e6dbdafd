"""Number formats of weights, KV cache and activations: bytes per element and the chip rate used.

Weights at ``fp16``/``bf16``/``fp8``/``int8``/``fp4``: GEMMs run at the weight format (W8A8,
W4A4 as served by TensorRT-LLM, SGLang/DeepGEMM, CANN INT8), at the chip's dense peak for that
format; a chip without it raises a one-line error naming ``--precision`` (``ChipSpec.peak``).
Attention products run at BF16 (FP16 where BF16 is unknown) unless FP8 attention is asked for
(``--attention-precision fp8``: FlashMLA / FlashAttention-3 FP8 kernels on an FP8 KV cache). Activations exchanged between chips
are BF16, except MoE dispatch, which is sent at the weight format when it is 8 bits or fewer
(DeepEP FP8 dispatch; CloudMatrix-Infer INT8 dispatch).

Per-module weight formats (formula I20, docs/inference.md): a serving recipe may store and run each part
of the model at its own format (``--module-precision attention=bf16,router=bf16`` or a named recipe from
``data/inference/precision-recipes.yaml``, e.g. TensorRT-LLM's DeepSeek-R1 FP4 recipe: NVFP4 experts and
FFNs, BF16 attention, router, MTP and LM head). :func:`module_formats` gives the format of every part
(``MODULES``); an unlisted part takes ``--precision``. Each part's GEMMs run at its format's dense rate and
read its bytes per element; its weights occupy that many bytes per parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Kind, Strict
from supernode.errors import CatalogError, UsageError
from supernode.hardware import ChipSpec

# bytes per element: the definition of each format (not a hardware constant), block scales included: fp4 is NVFP4,
# 4-bit E2M1 values with one E4M3 scale per 16 (4.5 bits; OCP MXFP4, one E8M0 per 32, is 4.25 bits, 5.6% less, not
# told apart); FP8 / INT8 use per-tensor, per-channel or 128-wide block scales (under 3% here: not counted)
BYTES_PER_ELEMENT = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5 + 1.0 / 16.0}
WEIGHT_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp4")
KV_PRECISIONS = ("bf16", "fp16", "fp8", "int8")
ACTIVATION_BYTES = BYTES_PER_ELEMENT["bf16"]


@dataclass(frozen=True)
class MixedFormat:
    """A part whose layers are stored and run at different formats (I32): ``shares`` = ((format, share of the part's
    weights), ...), summing to 1. Which layers take which format is not known (ModelOpt's AutoQuantize picks them per
    layer from a calibration score), so every cost of the part that is linear in the choice of one layer's format
    (its GEMM times, kernel floors included, its weight bytes, its glue and dispatch traffic) is priced as the
    share-weighted mean over the formats: the expected cost over any assignment with those shares, exact for a
    part's total where each layer's cost scales with its weights."""

    shares: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return " + ".join(f"{f} {s:.1%}" for f, s in self.shares)


def format_shares(fmt) -> tuple[tuple[str, float], ...]:
    """((format, share), ...) of a part's weights: ((fmt, 1.0),) for one format, a :class:`MixedFormat`'s shares."""
    return fmt.shares if isinstance(fmt, MixedFormat) else ((fmt, 1.0),)


def mean_over_formats(fmt, cost: Callable[[str], object]):
    """The share-weighted mean of ``cost(format)`` over ``fmt``'s formats (I32); ``cost(fmt)`` for one format."""
    if not isinstance(fmt, MixedFormat):
        return cost(fmt)
    return sum(s * cost(f) for f, s in fmt.shares)


def weight_bytes(precision: str) -> float:
    if isinstance(precision, MixedFormat):
        return mean_over_formats(precision, weight_bytes)
    if precision not in WEIGHT_PRECISIONS:
        raise UsageError(f"--precision: {precision!r} is not one of {', '.join(WEIGHT_PRECISIONS)}")
    return BYTES_PER_ELEMENT[precision]


def kv_bytes(precision: str) -> float:
    if precision not in KV_PRECISIONS:
        raise UsageError(f"--kv-precision: {precision!r} is not one of {', '.join(KV_PRECISIONS)}")
    return BYTES_PER_ELEMENT[precision]


def dispatch_bytes(precision: str) -> float:
    """Bytes per element of MoE dispatch traffic (combine is always BF16); a mixed part's mean (I32)."""
    return mean_over_formats(precision, lambda f: min(BYTES_PER_ELEMENT[f], ACTIVATION_BYTES))


def gather_bytes(precision: str) -> float:
    """Bytes per element of the tokens an all-gathering MoE (I41) gathers for experts at ``precision``: NVFP4 with
    its scales for FP4 experts (quantized before the gather), BF16 otherwise (FP8 taken as block-scaled, whose
    activations TensorRT-LLM quantizes 1x128 after the gather); a mixed part's mean (I32)."""
    return mean_over_formats(precision, lambda f: dispatch_bytes(f) if f == "fp4" else ACTIVATION_BYTES)


def attention_precision(chip: ChipSpec) -> str:
    for p in ("bf16", "fp16"):
        if p in chip.peak_flop_per_s:
            return p
    raise UsageError(f"--on: chip {chip.id!r} has no known BF16/FP16 rate for attention")


ATTENTION_PRECISIONS = ("bf16", "fp16", "fp8")


def check_attention_precision(chip: ChipSpec, precision: str | None, kv_precision: str) -> None:
    """One-line errors for an attention format the chip or the KV cache cannot run."""
    if precision is None:
        return
    if precision not in ATTENTION_PRECISIONS:
        raise UsageError(f"--attention-precision: {precision!r} is not one of {', '.join(ATTENTION_PRECISIONS)}")
    if precision == "fp8" and BYTES_PER_ELEMENT[kv_precision] > 1:
        raise UsageError("--attention-precision: fp8 attention needs an 8-bit KV cache (--kv-precision fp8)")
    chip.peak(precision)  # names --precision and the chip when the rate is unknown


def default_precision(chip: ChipSpec) -> str:
    """The format served by default: FP8 where the chip has it, else INT8, else BF16 (stated in
    every output's assumptions)."""
    for p in ("fp8", "int8", "bf16", "fp16"):
        if p in chip.peak_flop_per_s:
            return p
    raise UsageError(f"--on: chip {chip.id!r} has no known dense FP8/INT8/BF16 rate")


# Parts of a model whose weights a recipe may store at their own format (I20). ``attention``: the Q/K/V/O
# projections (MLA's down/up projections included); ``dense_ffn``: the FFN of the dense layers;
# ``shared_experts`` / ``experts``: a MoE layer's always-on and routed experts; ``router``: the gate GEMM;
# ``mtp``: every GEMM of the draft module's block (MTP / EAGLE-style head; its 2D -> D projection runs BF16
# regardless); ``lm_head``: the output head, and for memory the input embedding table (the other V x D matrix;
# a lookup, no GEMM).
MODULES = ("attention", "dense_ffn", "shared_experts", "experts", "router", "mtp", "lm_head")
MODULE_FLAG = "--module-precision"


def check_module_precision(module_precision) -> None:
    """One-line errors naming ``--module-precision`` for an unknown module or format (None: nothing to check)."""
    if module_precision is None:
        return
    if not isinstance(module_precision, Mapping):
        raise UsageError(f"{MODULE_FLAG}: expected module=format pairs (a mapping), got {module_precision!r}")
    for module, given in module_precision.items():
        if module not in MODULES:
            raise UsageError(f"{MODULE_FLAG}: unknown module {module!r}; expected one of {', '.join(MODULES)}")
        for fmt, _ in format_shares(given):
            if fmt not in WEIGHT_PRECISIONS:
                raise UsageError(f"{MODULE_FLAG}: {module}={fmt!r} is not a weight format; expected one of "
                                 f"{', '.join(WEIGHT_PRECISIONS)}")


def module_formats(precision: str, module_precision: Mapping[str, str] | None = None) -> dict[str, str]:
    """Weight format of every part in ``MODULES`` (I20): ``module_precision[part]`` where given, else
    ``precision``. One-line UsageError for an unknown part or format."""
    weight_bytes(precision)
    check_module_precision(module_precision)
    given = module_precision or {}
    return {m: given.get(m, precision) for m in MODULES}


def module_weight_bytes(formats: Mapping[str, str]) -> dict[str, float]:
    """Bytes per element of every part's weights (I20), from :func:`module_formats`; a mixed part's mean (I32)."""
    return {m: weight_bytes(f) for m, f in formats.items()}


def check_module_formats_on_chip(chip: ChipSpec, module_precision: Mapping[str, str] | None) -> None:
    """One-line error naming ``--module-precision`` when the chip has no dense rate for a part's format
    (the same check ``ChipSpec.peak`` makes for ``--precision``)."""
    check_module_precision(module_precision)
    for module, given in (module_precision or {}).items():
        for fmt, _ in format_shares(given):
            if fmt not in chip.peak_flop_per_s:
                have = ", ".join(sorted(chip.peak_flop_per_s)) or "none"
                raise UsageError(f"{MODULE_FLAG}: {module}={fmt}: chip {chip.id!r} has no known dense {fmt} rate "
                                 f"(known: {have})")


class ModuleFormat(Strict):
    """One part's format in a published recipe, with its provenance."""

    format: str
    kind: Kind
    source: str
    locator: str
    note: str | None = None


class PrecisionRecipe(Strict):
    title: str
    models: list[str]  # model ids the recipe was published for
    modules: dict[str, ModuleFormat]
    note: str | None = None


class PrecisionRecipes(Strict):
    id: str
    recipes: dict[str, PrecisionRecipe]


@lru_cache(maxsize=1)
def recipes() -> PrecisionRecipes:
    """Published per-module weight recipes (``data/inference/precision-recipes.yaml``)."""
    rec = parse_item(Path(builtin_dir()) / "inference" / "precision-recipes.yaml", PrecisionRecipes)
    for name, r in rec.recipes.items():
        try:
            check_module_precision({m: f.format for m, f in r.modules.items()})
        except UsageError as exc:
            raise CatalogError(f"data/inference/precision-recipes.yaml: recipes.{name}: {exc}") from None
    return rec


def recipe(name: str) -> dict[str, str]:
    """Module -> format of the named recipe; one-line UsageError naming ``--module-precision`` otherwise."""
    rec = recipes().recipes.get(name)
    if rec is None:
        raise UsageError(f"{MODULE_FLAG}: unknown recipe {name!r}; expected module=format pairs (modules: "
                         f"{', '.join(MODULES)}) or a recipe: {', '.join(recipes().recipes)}")
    return {m: f.format for m, f in rec.modules.items()}


def parse_module_precision(text: str | None) -> dict[str, str] | None:
    """``"attention=bf16,router=bf16"``, a recipe name (``"trtllm-r1-fp4"``), or both (the pairs after a
    recipe override it) -> module -> format; None for None or an empty string. One-line UsageError naming
    ``--module-precision`` for a malformed item, an unknown module, format or recipe."""
    if text is None or not text.strip():
        return None
    out: dict[str, str] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            raise UsageError(f"{MODULE_FLAG}: empty item in {text!r} (expected module=format,...)")
        if "=" not in item:
            out.update(recipe(item))
            continue
        module, _, fmt = (x.strip() for x in item.partition("="))
        if not module or not fmt:
            raise UsageError(f"{MODULE_FLAG}: cannot read {item!r} (expected module=format, e.g. attention=bf16)")
        out[module] = fmt.lower()
    check_module_precision(out)
    return out


def resolve_module_precision(value) -> dict[str, str] | None:
    """A mapping (checked), a string for :func:`parse_module_precision`, or None."""
    if value is None or isinstance(value, str):
        return parse_module_precision(value)
    check_module_precision(value)
    return dict(value) or None


# Parts left unquantized by default (I33): the quantization tools of the serving stacks quantize the linear layers
# of the decoder blocks and leave the LM head and the MoE router at 16 bits unless told otherwise: ModelOpt's default
# configurations (_default_disabled_quantizer_cfg: "*lm_head*", "*router*", "*block_sparse_moe.gate*", "*mlp.gate.*"
# disabled; the recipe of every TensorRT-LLM / MLPerf NVIDIA checkpoint), TensorRT-LLM's quantize script
# (disabled_layers=["*lm_head*"]), ModelOpt's DeepSeek ptq.py ("*head*" disabled) and AMD's Quark MLPerf recipe ("All
# nn.linear modules within the decoder blocks"). A part named in --module-precision takes its named format.
UNQUANTIZED_PARTS = ("lm_head", "router")


def unquantized_parts(chip: ChipSpec, precision: str, module_precision: Mapping | None) -> dict | None:
    """``module_precision`` with the LM head and the router at the chip's 16-bit format (BF16, else FP16) where the
    weights are quantized (``precision`` under 16 bits) and the part is not named (I33); unchanged otherwise."""
    given = dict(module_precision or {})
    if weight_bytes(precision) >= ACTIVATION_BYTES:
        return given or None
    fmt16 = attention_precision(chip)
    return {**{m: fmt16 for m in UNQUANTIZED_PARTS if m not in given}, **given}


# Effective bits (I32): ModelOpt's AutoQuantize (mtq.auto_quantize, constraints={"effective_bits": B}) stores each
# searched linear layer at one of its candidate formats or unquantized, choosing the layers by a calibration score so
# that the parameter-weighted mean of the bits it counts per format is at most B. It counts a floating format's
# 1 + exponent + mantissa bits, an integer format's bits and no block scales (estimate_quant_compression: NVFP4 4,
# FP8 8), and always adds "no quantization" (16 bits) to the candidates. TensorRT-LLM's quantize script passes one
# format (its --qformat) besides that, so a checkpoint of format p at B effective bits keeps a share
# (B - bits_p) / (16 - bits_p) of the searched weights at 16 bits (FP16, the checkpoint dtype of its unquantized
# parts) and the rest at p.
AUTOQUANT_BITS = {"fp4": 4.0, "fp8": 8.0, "int8": 8.0, "bf16": 16.0, "fp16": 16.0}
UNQUANTIZED_FORMAT = "fp16"
EFFECTIVE_BITS_FLAG = "--effective-bits"
NOT_SEARCHED = ("lm_head",)  # TensorRT-LLM's quantize script: disabled_layers=["*lm_head*"]


def apply_effective_bits(precision: str, module_precision: Mapping | None, effective_bits) -> dict | None:
    """``module_precision`` with every part left at ``precision`` (none named in ``module_precision``, the LM head
    not searched) made a :class:`MixedFormat` of ``precision`` and FP16 whose mean AutoQuantize bits are
    ``effective_bits`` (I32, above); ``module_precision`` itself when ``effective_bits`` is None. One-line
    UsageError naming ``--effective-bits`` for a value outside [bits of ``precision``, 16] or a 16-bit
    ``precision``. The parts fixed at 16 bits (LM head, a named BF16 router) count in AutoQuantize's total too,
    which lowers the searched parts' own mean slightly; not priced (for Mixtral 8x7B its LM head is 0.3% of the
    linear weights: a 16-bit share of 0.269 instead of 0.271 at 7.25 bits)."""
    if effective_bits is None:
        return dict(module_precision) if module_precision else None
    try:
        bits = float(effective_bits)
    except (TypeError, ValueError):
        raise UsageError(f"{EFFECTIVE_BITS_FLAG}: expected a number of bits per weight, got {effective_bits!r}") \
            from None
    weight_bytes(precision)
    low = AUTOQUANT_BITS[precision]
    if low >= 16.0:
        raise UsageError(f"{EFFECTIVE_BITS_FLAG}: needs a quantized --precision (fp4, fp8 or int8), got {precision}")
    if not low <= bits <= 16.0:
        raise UsageError(f"{EFFECTIVE_BITS_FLAG}: {bits:g} is outside [{low:g}, 16] for --precision {precision} "
                         f"(AutoQuantize counts {precision} as {low:g} bits, unquantized as 16)")
    given = dict(module_precision or {})
    share16 = (bits - low) / (16.0 - low)
    if share16 <= 0.0:
        return given or None
    mix = MixedFormat(((precision, 1.0 - share16), (UNQUANTIZED_FORMAT, share16)))
    return {**{m: mix for m in MODULES if m not in given and m not in NOT_SEARCHED}, **given}


def weight_formats(chip: ChipSpec, precision: str, module_precision, effective_bits=None) -> dict | None:
    """The weight formats a run is priced at, checked against ``chip``: the parts named in ``module_precision`` (a
    mapping, text or recipe; I20), the LM head and router kept at 16 bits (I33), the parts left at ``precision``
    mixed with FP16 at ``effective_bits`` (I32). None: every part at ``precision``."""
    named = resolve_module_precision(module_precision)
    modules = apply_effective_bits(precision, unquantized_parts(chip, precision, named), effective_bits)
    check_module_formats_on_chip(chip, modules)
    return modules


def format_names(formats: Mapping) -> dict[str, str]:
    """``formats`` with every value a string (JSON output): a :class:`MixedFormat` as ``"fp4 72.9% + fp16 27.1%"``."""
    return {m: str(f) for m, f in formats.items()}


def describe_module_formats(precision: str, module_precision: Mapping[str, str] | None,
                            label: str | None = None) -> str | None:
    """One line for the assumptions list (None without per-module formats); ``label``: the
    ``--module-precision`` text as given (it may name a recipe)."""
    if not module_precision:
        return None
    fm = module_formats(precision, module_precision)
    parts = ", ".join(f"{m} {fm[m]}" for m in MODULES)
    given = f"--module-precision {label}: " if label else ""
    srcs = sorted({f.source for name in (label or "").split(",") if name.strip() in recipes().recipes
                   for f in recipes().recipes[name.strip()].modules.values()})
    return (f"per-module weight formats (I20; {given}{parts}): each part's GEMMs at its format's dense rate and "
            "bytes per element, its weights stored at that format (the input embedding with lm_head), MoE dispatch "
            "at the experts' format; fp4 is NVFP4 with its block scales (0.5625 bytes per element)"
            + (f"; recipe sources: {', '.join(srcs)}" if srcs else ""))
