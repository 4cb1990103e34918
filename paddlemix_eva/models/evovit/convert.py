"""Conversion of Evo-ViT checkpoints (the official PyTorch release of Evo-DeiT and Evo-LeViT) and of timm's
`regnety_160` (the distillation teacher) into this package's layouts.

Official Evo-DeiT splits each attention into per-layer lists: `norms.i` (LN1), `qks.i` (one Linear D -> 2D giving
q and k), `vs.i` (v), `projs.i`; `blocks.i` hold LN2 and the MLP. They become the shared block's
`blocks.i.norm1`, `attn.q_proj/k_proj/v_proj`, `attn.proj`. Official Evo-LeViT keeps LeViT's flat `blocks`
sequence of residual-wrapped modules (`blocks.n.m.*`), registered a second time as `stage_blocks` (dropped here);
its `Linear_BN` / `Conv2d_BN` / `BN_Linear` sub-layers keep their names `c`, `bn`, `l`. Every Linear weight is
transposed to Paddle's [in, out], BatchNorm statistics are renamed (`running_mean` -> `_mean`).
"""
from __future__ import annotations

import logging
import re
from typing import Dict, List, Tuple

import numpy as np

from paddlemix_eva.convert.shapes import count_blocks, mlp_ratio_for, require_tensor
from paddlemix_eva.utils.checkpoint import CheckpointError, StateDict

logger = logging.getLogger(__name__)

_DEIT_MARKER = re.compile(r"^(qks|vs|projs|norms)\.\d+\.")
_LEVIT_MARKER = re.compile(r"^stage_blocks\.\d+\.|^blocks\.\d+\.m\.qkv\.c\.weight$")
_REGNET_KEYS = ("stem.conv.weight", "s1.b1.conv1.conv.weight", "s1.b1.se.fc1.weight")
_BN_RENAMES = (("running_mean", "_mean"), ("running_var", "_variance"))
#: heads of the Evo-DeiT sizes by width (64-channel heads)
DEIT_HEAD_DIM = 64


def _kind(state: StateDict) -> str:
    if any(_DEIT_MARKER.match(k) for k in state):
        return "evo_deit"
    if any(_LEVIT_MARKER.match(k) for k in state) and "poss" in state:
        return "evo_levit"
    if all(k in state for k in _REGNET_KEYS):
        return "regnet"
    return ""


def detect(state: StateDict) -> bool:
    """Official Evo-DeiT (`qks.i` / `vs.i` / `projs.i` / `norms.i` lists), official Evo-LeViT (LeViT's residual
    `blocks.n.m.qkv.c` with the Evo `poss` table) or a timm RegNetY (`stem.conv`, `s1.b1.se`)."""
    return bool(_kind(state))


def _bn_renamed(key: str) -> str:
    for old, new in _BN_RENAMES:
        if key.endswith("." + old):
            return key[: -len(old)] + new
    return key


def _linear(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value.T)


# ------------------------------------------------------------------------------------------ Evo-DeiT
def _deit_key(key: str, value: np.ndarray) -> List[Tuple[str, np.ndarray]]:
    """Our (key, tensor) pairs for one official Evo-DeiT tensor."""
    match = re.match(r"^qks\.(\d+)\.(?:qk\.)?(weight|bias)$", key)
    if match:
        layer, kind = match.groups()
        q, k = np.split(value, 2, axis=0)
        convert = _linear if kind == "weight" else (lambda v: v)
        return [(f"blocks.{layer}.attn.q_proj.{kind}", convert(q)), (f"blocks.{layer}.attn.k_proj.{kind}", convert(k))]
    renames = ((r"^norms\.(\d+)\.", r"blocks.\1.norm1."), (r"^vs\.(\d+)\.", r"blocks.\1.attn.v_proj."),
               (r"^projs\.(\d+)\.", r"blocks.\1.attn.proj."))
    for pattern, repl in renames:
        key = re.sub(pattern, repl, key)
    is_linear = value.ndim == 2 and key.endswith(".weight") and not key.startswith("patch_embed.")
    return [(key, _linear(value) if is_linear else value)]


def _convert_deit(state: StateDict, source: str):
    from paddlemix_eva.models.evovit import EvoDeiT, EvoDeiTConfig

    out: StateDict = {}
    for key, value in state.items():
        out.update(_deit_key(key, value))
    conv, pos = require_tensor(out, "patch_embed.proj.weight", source), require_tensor(out, "pos_embed", source)
    hidden = int(require_tensor(out, "blocks.0.mlp.fc1.weight", source).shape[1])
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    grid = int(round(np.sqrt(pos.shape[1] - 1)))
    depth = count_blocks(out, r"blocks\.(\d+)\.", source)
    config = EvoDeiTConfig(
        image_size=grid * patch, patch_size=patch, in_chans=int(conv.shape[1]), embed_dim=width, layers=depth,
        num_heads=max(1, width // DEIT_HEAD_DIM), mlp_ratio=mlp_ratio_for(hidden, width),
        num_classes=int(out["head.weight"].shape[1]) if "head.weight" in out else 0, cls_head="head_cls.weight" in out,
    )
    logger.info("%s: Evo-DeiT, width %d, %d heads, %d px", source, width, config.num_heads, config.image_size)
    return EvoDeiT, config, out


# ----------------------------------------------------------------------------------------- Evo-LeViT
def official_levit_prefixes(config) -> Dict[str, str]:
    """Official module prefix -> ours, for every module of an Evo-LeViT of `config` (LeViT's flat layout:
    per stage, each block as Residual(attention) then Residual(MLP), then subsampling attention and a Residual
    MLP before the next stage)."""
    prefixes = {f"patch_embed.{2 * i}.": f"patch_embed.convs.{i}." for i in range(4)}
    n = 0
    for s, depth in enumerate(config.depths):
        for b in range(depth):
            ours = f"stages.{s}.blocks.{b}."
            prefixes[f"blocks.{n}.m.qkv."] = ours + "attn.qkv."
            prefixes[f"blocks.{n}.m.proj.1."] = ours + "attn.proj."
            prefixes[f"blocks.{n}.m.learn_tradeoff"] = ours + "attn.learn_tradeoff"
            prefixes[f"blocks.{n + 1}.m.0."] = ours + "mlp.fc1."
            prefixes[f"blocks.{n + 1}.m.2."] = ours + "mlp.fc2."
            n += 2
        if s + 1 < len(config.depths):
            ours = f"downsamples.{s}."
            for official, mine in (("kv.", "attn.kv."), ("q.1.", "attn.q."), ("proj.1.", "attn.proj."),
                                   ("poss", "attn.poss"), ("learn_tradeoff", "attn.learn_tradeoff")):
                prefixes[f"blocks.{n}.{official}"] = ours + mine
            prefixes[f"blocks.{n + 1}.m.0."] = ours + "mlp.fc1."
            prefixes[f"blocks.{n + 1}.m.2."] = ours + "mlp.fc2."
            n += 2
    return prefixes


def _levit_size(state: StateDict, source: str):
    """The zoo size whose stage widths, depths and attention widths fit the checkpoint."""
    from paddlemix_eva.models.evovit.zoo_table import LEVIT_SIZES, levit_config

    stem_width = int(state["patch_embed.6.c.weight"].shape[0])
    qkv_widths = sorted({int(v.shape[0]) for k, v in state.items() if re.match(r"^blocks\.\d+\.m\.qkv\.c\.weight$", k)})
    blocks = len([k for k in state if re.match(r"^blocks\.\d+\.m\.qkv\.c\.weight$", k)])
    for size, fields in LEVIT_SIZES.items():
        heads_dims = zip(fields["num_heads"], [fields["key_dim"]] * 3)
        widths = sorted({h * d * 4 for h, d in heads_dims})  # q, k (key_dim) and v (2 key_dim) per head
        if fields["embed_dims"][0] == stem_width and sum(fields["depths"]) == blocks and widths == qkv_widths:
            return size, levit_config
    raise CheckpointError(f"{source}: an Evo-LeViT checkpoint of no known size (stem width {stem_width}, {blocks} "
                          f"attention blocks, qkv widths {qkv_widths}); sizes: {sorted(LEVIT_SIZES)}")


def _convert_levit(state: StateDict, source: str):
    from paddlemix_eva.models.evovit import EvoLeViT, EvoLeViTConfig

    state = {k: v for k, v in state.items()
             if not k.startswith("stage_blocks.") and not k.endswith("num_batches_tracked")}
    size, levit_config = _levit_size(state, source)
    grid = int(round(np.sqrt(state["poss"].shape[1] - 1)))
    num_classes = int(state["head.l.weight"].shape[0])
    config = EvoLeViTConfig(**levit_config(size, grid * 16), num_classes=num_classes,
                            distillation="head_dist.l.weight" in state)
    prefixes = official_levit_prefixes(config)
    out: StateDict = {}
    for key, value in state.items():
        mine = next((m + key[len(o):] for o, m in prefixes.items() if key.startswith(o)), key)
        mine = _bn_renamed(mine)
        if value.ndim == 2 and re.search(r"\.(c|l)\.weight$", mine):
            value = _linear(value)
        if mine.endswith("learn_tradeoff"):
            value = np.asarray(value, np.float32).reshape([1])
        out[mine] = value
    logger.info("%s: Evo-LeViT-%s at %d px", source, size, config.image_size)
    return EvoLeViT, config, out


# -------------------------------------------------------------------------------------------- RegNet
def _convert_regnet(state: StateDict, source: str):
    from paddlemix_eva.models.evovit import RegNet, RegNetConfig

    out = {_bn_renamed(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    out["head.fc.weight"] = _linear(out["head.fc.weight"])
    stages = sorted({int(m.group(1)) for k in out if (m := re.match(r"^s(\d+)\.b", k))})
    depths = [len({m.group(1) for k in out if (m := re.match(rf"^s{s}\.b(\d+)\.", k))}) for s in stages]
    widths = [int(out[f"s{s}.b1.conv1.conv.weight"].shape[0]) for s in stages]
    stem_width = int(out["stem.conv.weight"].shape[0])
    config = RegNetConfig(
        in_chans=int(out["stem.conv.weight"].shape[1]), num_classes=int(out["head.fc.weight"].shape[1]),
        stem_width=stem_width, widths=widths, depths=depths, group_width=int(out["s1.b1.conv2.conv.weight"].shape[1]),
        se_ratio=out["s1.b1.se.fc1.weight"].shape[0] / stem_width,
    )
    logger.info("%s: RegNetY widths %s depths %s", source, widths, depths)
    return RegNet, config, out


def convert(state: StateDict, fmt: str, source: str):
    """(model class, config, Paddle-layout state) of an official Evo-ViT or timm RegNetY checkpoint."""
    kind = _kind(state)
    expected = "timm" if kind == "regnet" else "official"
    if fmt != expected:
        raise CheckpointError(f"{source} is a {kind} checkpoint in the {expected} layout; use --format {expected}")
    return {"evo_deit": _convert_deit, "evo_levit": _convert_levit, "regnet": _convert_regnet}[kind](state, source)
