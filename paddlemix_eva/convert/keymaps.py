"""State-dict layouts of official EVA / timm / open_clip checkpoints mapped to PaddleMIX names.

Rules (see `parity_keymaps.md`): RoPE buffers dropped; fused `qkv` split in thirds (q, k, v) and packed SwiGLU
`w12`/`fc1` in halves (gate w1 first) *before* transposing; `q_bias`/`v_bias` become the projections' biases;
every Linear weight transposed to Paddle's [in, out]; conv, LayerNorm, embeddings, cls/pos/mask tokens and
raw projection matrices keep their layout.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

import numpy as np

StateDict = Dict[str, np.ndarray]
FORMATS = ("official", "timm", "open_clip", "paddlemix")

# Renames applied to the key suffix inside a block, per source layout (after fused tensors are split).
_TIMM_RENAMES: List[Tuple[str, str]] = [
    (r"\.mlp\.fc1_g\.", ".mlp.w1."),
    (r"\.mlp\.fc1_x\.", ".mlp.w2."),
    (r"\.mlp\.norm\.", ".mlp.ffn_ln."),
    (r"\.attn\.norm\.", ".attn.inner_attn_ln."),
]
_OFFICIAL_RENAMES: List[Tuple[str, str]] = [
    (r"\.attn\.q_bias$", ".attn.q_proj.bias"),
    (r"\.attn\.v_bias$", ".attn.v_proj.bias"),
]
# 2-D `.weight`s that are lookup tables, not Linear layers: never transposed. (Raw `x @ P` matrices such as
# `text_projection` carry no `.weight` suffix and are left alone too.)
_NOT_LINEAR = re.compile(r"token_embedding\.weight$")


def _is_linear_weight(key: str, value: np.ndarray) -> bool:
    return value.ndim == 2 and key.endswith(".weight") and not _NOT_LINEAR.search(key)


def _split_fused(state: StateDict) -> StateDict:
    """Split fused qkv (thirds) and packed SwiGLU (halves, gate first) along the PyTorch output dim."""
    out: StateDict = {}
    for key, value in state.items():
        if re.search(r"\.attn\.qkv\.(weight|bias)$", key):
            prefix, kind = key.rsplit(".qkv.", 1)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                if kind == "bias" and name == "k_proj" and not np.any(part):
                    continue  # EVA vision towers have no k bias; a zero one is padding
                out[f"{prefix}.{name}.{kind}"] = part
            continue
        in_proj = re.search(r"\.attn\.in_proj_(weight|bias)$", key)
        if in_proj:  # torch.nn.MultiheadAttention (CLIP text): q, k, v all with a real bias
            prefix = key[: in_proj.start()]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                out[f"{prefix}.attn.{name}.{in_proj.group(1)}"] = part
            continue
        packed = re.search(r"\.mlp\.(w12|fc1)\.(weight|bias)$", key)
        if packed:
            prefix = key[: packed.start()]
            fc2 = state.get(f"{prefix}.mlp.{'w3' if packed.group(1) == 'w12' else 'fc2'}.weight")
            hidden_out = fc2.shape[1] if fc2 is not None else None
            if packed.group(1) == "w12" or (hidden_out is not None and value.shape[0] == 2 * hidden_out):
                gate, linear = np.split(value, 2, axis=0)
                out[f"{prefix}.mlp.w1.{packed.group(2)}"] = gate
                out[f"{prefix}.mlp.w2.{packed.group(2)}"] = linear
                continue
        out[key] = value
    return out


def _swiglu_fc2_to_w3(state: StateDict) -> StateDict:
    """A block whose FFN is SwiGLU names its output projection w3 (timm calls it fc2)."""
    swiglu_blocks = {k.rsplit(".mlp.", 1)[0] for k in state if ".mlp.w1." in k}
    out: StateDict = {}
    for key, value in state.items():
        match = re.match(r"(.*)\.mlp\.fc2\.(weight|bias)$", key)
        if match and match.group(1) in swiglu_blocks:
            key = f"{match.group(1)}.mlp.w3.{match.group(2)}"
        out[key] = value
    return out


def _rename(state: StateDict, rules: List[Tuple[str, str]]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, "." + key)[1:]
        out[key] = value
    return out


def _transpose_linears(state: StateDict) -> StateDict:
    return {k: (np.ascontiguousarray(v.T) if _is_linear_weight(k, v) else v) for k, v in state.items()}


def _drop_buffers(state: StateDict) -> StateDict:
    return {k: v for k, v in state.items() if not re.search(r"(^|\.)rope\.|(^|\.)k_bias$|attn_mask$", k)}


def _strip_prefix(state: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def vision_to_paddlemix(state: StateDict, fmt: str) -> StateDict:
    """Map an EVA-02 / EVA vision state dict (no tower prefix) from `fmt` to PaddleMIX names."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {FORMATS}")
    if fmt == "paddlemix":
        return _drop_buffers(state)
    state = _drop_buffers(state)
    state = _rename(state, _OFFICIAL_RENAMES + _TIMM_RENAMES)
    state = _split_fused(state)
    state = _swiglu_fc2_to_w3(state)
    return _transpose_linears(state)


def detect_format(state: StateDict) -> str:
    """Best guess of a checkpoint's layout from its keys (used to give a precise error on a wrong --format)."""
    keys = list(state)
    if any(k.startswith("visual.trunk.") for k in keys):
        return "open_clip"
    if any(k.endswith("attn.in_proj_weight") for k in keys):
        return "official"  # CLIP text towers in torch layout (official rei / asuka); open_clip caught above
    # timm-only names; `attn.q_proj.bias` is no marker: PaddleMIX checkpoints have it too (every B/L, and Ti/S)
    if any(re.search(r"\.mlp\.(fc1_g|fc1_x|norm)\.|\.attn\.norm\.", k) for k in keys):
        return "timm"
    # fused qkv + packed `fc1`: timm's Ti/S (which also has q_bias/v_bias; the official layout packs it as `w12`)
    if any(re.search(r"\.mlp\.fc1\.weight$", k) for k in keys) and any(k.endswith("attn.qkv.weight") for k in keys):
        return "timm"
    if any(re.search(r"\.attn\.(q_bias|v_bias)$|\.mlp\.w12\.|(^|\.)rope\.freqs", k) for k in keys):
        return "official"
    return "paddlemix"



def proven_format(state: StateDict):
    """The one layout the keys prove, or None where several layouts name these keys alike (EVA-01's `qkv` +
    GELU `fc1` is both official and timm): `visual.trunk.` is open_clip's; `fc1_g` / `fc1_x` / `mlp.norm` /
    `attn.norm` timm's; `w12`, persisted RoPE tables, or `q_bias` beside a separate `q_proj` the official code's;
    `q_proj.bias` with `mlp.w1` PaddleMIX's (official writes `q_bias`, timm `fc1_g`)."""
    keys = list(state)

    def has(pattern: str) -> bool:
        return any(re.search(pattern, k) for k in keys)

    if has(r"^visual\.trunk\."):
        return "open_clip"
    if has(r"\.mlp\.(fc1_g|fc1_x|norm)\.|\.attn\.norm\."):
        return "timm"
    if has(r"\.mlp\.w12\.|(^|\.)rope\.freqs") or (has(r"\.attn\.q_bias$") and has(r"\.attn\.q_proj\.weight$")):
        return "official"
    if has(r"\.attn\.q_proj\.bias$") and has(r"\.mlp\.w1\.weight$"):
        return "paddlemix"
    return None


# Top-level keys of the official EVA-CLIP / OpenAI CLIP text tower (open_clip and PaddleMIX nest them under `text.`).
_TEXT_TOP_LEVEL = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def is_clip_state_dict(state: StateDict) -> bool:
    return any(k.startswith(("visual.", "text.")) for k in state) or any(k.startswith(_TEXT_TOP_LEVEL) for k in state)


def clip_to_paddlemix(state: StateDict, fmt: str) -> StateDict:
    """Map a whole EVA-CLIP checkpoint (official `rei`, the EVA-02 `asuka` teacher, open_clip or PaddleMIX) to
    PaddleMIX names: `visual.*`, `text.*`, `logit_scale` of shape [1]."""
    vision: StateDict = {}
    text: StateDict = {}
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("visual.trunk."):
            vision[key[len("visual.trunk."):]] = value
        elif key.startswith("visual."):
            vision[key[len("visual."):]] = value
        elif key in ("logit_scale", "text.logit_scale"):
            out["logit_scale"] = np.asarray(value, dtype=np.float32).reshape([1])
        elif key.startswith("text."):
            text[key[len("text."):]] = value
        elif key.startswith(_TEXT_TOP_LEVEL):
            text[key] = value
        else:
            out[key] = value  # left for the key check to report
    if fmt != "paddlemix":
        text = _transpose_linears(_split_fused(_drop_buffers(text)))
    out.update({f"visual.{k}": v for k, v in vision_to_paddlemix(vision, fmt).items()})
    out.update({f"text.{k}": v for k, v in text.items()})
    return out
