"""Every private Paddle / PaddleNLP API the package relies on, in one place, so a version change breaks here (and in
tests/test_private_api.py, which checks each against the pinned paddlepaddle 3.3.1 / paddlenlp 2.8.1) instead of deep
inside a training run."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple

#: Private methods of Paddle / PaddleNLP classes that our subclasses override or call: class path -> method ->
#: leading parameters. tests/test_private_api.py checks each against the installed versions.
PRIVATE_METHODS = {
    "paddlenlp.trainer.Trainer": {
        "_save_checkpoint": ("self", "model", "metrics"),
        "_load_from_checkpoint": ("self", "resume_from_checkpoint"),
        "_load_optimizer_and_scheduler": ("self", "checkpoint"),
        "_get_train_sampler": ("self",),
        "_wrap_model": ("self", "model", "training"),
        "_prepare_inputs": ("self", "inputs"),
        "_enable_delay_scale_loss": ("self",),
        "_rotate_checkpoints": ("self", "use_mtime", "output_dir"),
    },
    "paddlenlp.trainer.integrations.VisualDLCallback": {
        "_init_summary_writer": ("self", "args"),
    },
    "paddle.optimizer.Optimizer": {
        "_create_accumulators": ("self", "block", "parameters"),
        "_append_optimize_op": ("self", "block", "param_and_grad"),
        "_add_accumulator": ("self", "name", "param"),
        "_get_accumulator": ("self", "name", "param"),
        "_create_param_lr": ("self", "param_and_grad"),
    },
}
TRAINER_HOOKS = PRIVATE_METHODS["paddlenlp.trainer.Trainer"]


# ------------------------------------------------------------------------------------------- PaddleNLP
@contextlib.contextmanager
def no_init_weights() -> Iterator[None]:
    """Build PaddleNLP models without running their `init_weights` (weights come next, or are not needed)."""
    from paddlenlp.transformers.model_utils import no_init_weights as pnlp_no_init_weights

    with pnlp_no_init_weights(_enable=True):
        yield


def init_weights_enabled() -> bool:
    """False inside `no_init_weights` (PaddleNLP's module flag)."""
    from paddlenlp.transformers import model_utils

    return bool(model_utils._init_weights)


# ---------------------------------------------------------------------------------------------- Paddle
def set_eager_threads(num_threads: int) -> None:
    """Threads of Paddle's eager CPU kernels (MKL / OpenMP); Paddle has no public setter."""
    import paddle

    paddle.base.core.set_num_threads(int(num_threads))


def cpu_supports_avx512f() -> bool:
    import paddle

    core = paddle.base.core
    return bool(hasattr(core, "supports_avx512f") and core.supports_avx512f())


def onednn_compiled() -> bool:
    import paddle

    return bool(paddle.base.core.is_compiled_with_onednn())


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: what oneDNN's bfloat16 kernels need to beat float32."""
    import paddle

    return bool(paddle.base.core.supports_bfloat16_fast_performance())


def batch_norm_statistics(bn) -> Tuple[object, object, float]:
    """(running mean, running variance, epsilon) of a Paddle BatchNorm layer (kept in private attributes)."""
    return bn._mean, bn._variance, float(bn._epsilon)


def conv2d_arguments(conv) -> dict:
    """The constructor arguments of a Paddle Conv2D, to build its twin (Paddle keeps them private)."""
    return {
        "in_channels": conv._in_channels,
        "out_channels": conv._out_channels,
        "kernel_size": conv._kernel_size,
        "stride": conv._stride,
        "padding": conv._padding,
        "groups": conv._groups,
    }


def has_self_dp_attention() -> bool:
    import paddle

    return hasattr(paddle._legacy_C_ops, "self_dp_attention") and hasattr(paddle._C_ops, "self_dp_attention")


def self_dp_attention(qkv, scale: float, num_heads: int):
    """Paddle's fused CPU attention op (AVX-512, forward only) on packed qkv [B, N, 3, H, d]."""
    import paddle

    if paddle.in_dynamic_mode():
        return paddle._legacy_C_ops.self_dp_attention(qkv, "alpha", float(scale), "head_number", int(num_heads))
    return paddle._C_ops.self_dp_attention(qkv, float(scale), int(num_heads))


def inner_optimizers(optimizer) -> Iterator:
    """The optimizer and the optimizers fleet's hybrid-parallel / sharding wrappers hold inside it."""
    while optimizer is not None:
        yield optimizer
        optimizer = getattr(optimizer, "_inner_opt", None)


def optimizer_parameters(optimizer) -> List:
    return list(optimizer._parameter_list)


def sharded_parameters(optimizer) -> Optional[Tuple[List, object]]:
    """(this rank's parameters, the sharding group) under fleet's sharding optimizer, else None."""
    sharding = next((o for o in inner_optimizers(optimizer) if hasattr(o, "_rank2params")), None)
    if sharding is None:
        return None
    return sharding._rank2params[sharding._sharding_rank], sharding._hcg.get_sharding_parallel_group()


def set_weight_decay(optimizer, value: float) -> None:
    """The coefficient the innermost optimizer applies at its next step (Lamb keeps it under another name)."""
    *_, inner = inner_optimizers(optimizer)
    key = "lamb_weight_decay" if hasattr(inner, "_lamb_weight_decay") else "weight_decay"
    setattr(inner, "_" + key, value)
    if hasattr(inner, "_default_dict"):
        inner._default_dict[key] = value


def loss_scale(scaler) -> Optional[float]:
    """The current fp16 loss scale of a GradScaler (None when scaling is off)."""
    if scaler is None or not getattr(scaler, "_enable", True):
        return None
    scale = getattr(scaler, "_scale", None)
    return None if scale is None else float(scale)
