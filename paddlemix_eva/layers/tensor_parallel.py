"""Tensor parallelism (CUDA only) with fleet's parallel layers, the way PaddleMIX shards EVA models.

Every `nn.Linear` of a built model whose output width divides by the tensor-parallel degree becomes a
`fleet.meta_parallel.ColumnParallelLinear(gather_output=True)`: each rank stores and computes its slice of the
output columns and the gathered output equals the plain layer's, so attention heads, sub-LNs and residuals are
unchanged and only weight / optimizer memory is split. The model is built and loaded whole first, then sharded;
saving merges the slices back (PaddleNLP's `merge_tensor_parallel` with `tensor_parallel_mappings`), so
checkpoints keep the single-device layout.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Dict, List

import numpy as np
import paddle.nn as nn

logger = logging.getLogger(__name__)


def linear_keys(model: nn.Layer, degree: int) -> List[str]:
    """State-dict keys (weight and bias) of the Linear layers that get sharded at `degree`."""
    keys = []
    for name, layer in model.named_sublayers():
        if type(layer) is nn.Linear and layer.weight.shape[1] % degree == 0:
            keys.append(f"{name}.weight")
            if layer.bias is not None:
                keys.append(f"{name}.bias")
    return keys


def split_columns(array: np.ndarray, degree: int, rank: int) -> np.ndarray:
    """This rank's output columns: the last axis of a [in, out] weight or an [out] bias."""
    return np.split(array, degree, axis=-1)[rank]


def merge_columns(parts: List[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts, axis=-1)


def tensor_parallel_mappings(model: nn.Layer, degree: int, rank: int, is_split: bool) -> Dict[str, Callable]:
    """key -> split (one full array to this rank's slice) or merge (all ranks' slices to the full array)."""
    action = partial(split_columns, degree=degree, rank=rank) if is_split else merge_columns
    return {key: action for key in linear_keys(model, degree)}


def shard_linears(model: nn.Layer) -> int:
    """Replace the model's Linear layers in place by column-parallel ones holding this rank's slice (see module
    docstring). Requires `fleet.init` with a model-parallel degree > 1 and a CUDA device; returns how many layers
    were sharded."""
    import paddle
    from paddle.distributed import fleet

    if not paddle.is_compiled_with_cuda():
        raise RuntimeError("tensor parallelism needs CUDA: fleet's parallel layers have no CPU kernels")
    hcg = fleet.get_hybrid_communicate_group()
    degree, rank = hcg.get_model_parallel_world_size(), hcg.get_model_parallel_rank()
    if degree <= 1:
        return 0
    count = 0
    for parent in [model] + list(model.sublayers()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.shape[1] % degree:
                continue
            in_features, out_features = child.weight.shape
            sharded = fleet.meta_parallel.ColumnParallelLinear(
                in_features, out_features, has_bias=child.bias is not None, gather_output=True
            )
            sharded.weight.set_value(split_columns(child.weight.numpy(), degree, rank))
            sharded.weight.stop_gradient = child.weight.stop_gradient
            if child.bias is not None:
                sharded.bias.set_value(split_columns(child.bias.numpy(), degree, rank))
                sharded.bias.stop_gradient = child.bias.stop_gradient
            setattr(parent, child_name, sharded)
            count += 1
    logger.info("tensor parallel: %d Linear layers of %s sharded over %d ranks (this is rank %d)", count,
                type(model).__name__, degree, rank)
    return count
