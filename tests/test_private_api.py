"""The private Paddle / PaddleNLP API that paddlemix_eva.utils.compat wraps, checked against the installed (pinned)
versions: when an upgrade renames or reshapes one of them, this file fails and names it."""
import importlib
import inspect

import numpy as np
import paddle
import pytest

from paddlemix_eva.utils import compat

PRIVATE_METHODS = [(cls, name) for cls, methods in compat.PRIVATE_METHODS.items() for name in methods]


@pytest.mark.parametrize("class_path,name", PRIVATE_METHODS,
                         ids=[f"{c.rsplit('.', 1)[1]}.{n}" for c, n in PRIVATE_METHODS])
def test_private_method_exists_with_the_parameters_we_use(class_path, name):
    module, cls_name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    method = getattr(cls, name, None)
    assert method is not None, f"{class_path}.{name} is gone; paddlemix_eva relies on it (see utils/compat.py)"
    params = tuple(inspect.signature(method).parameters)
    expected = compat.PRIVATE_METHODS[class_path][name]
    assert params[: len(expected)] == expected, f"{class_path}.{name}{params}: expected parameters {expected}"


def test_every_private_override_is_recorded():
    import paddlemix_eva.trainer.callbacks
    import paddlemix_eva.trainer.clip
    import paddlemix_eva.trainer.evovit
    import paddlemix_eva.trainer.lars
    import paddlemix_eva.trainer.mae
    import paddlemix_eva.trainer.mim  # noqa: F401  (the modules define the subclasses checked below)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    checked = 0
    for class_path, recorded in compat.PRIVATE_METHODS.items():
        module, cls_name = class_path.rsplit(".", 1)
        base = getattr(importlib.import_module(module), cls_name)
        for sub in subclasses(base):
            if not sub.__module__.startswith("paddlemix_eva."):
                continue
            checked += 1
            for name in vars(sub):
                if name.startswith("_") and not name.startswith("__") and hasattr(base, name):
                    assert name in recorded, (f"{sub.__name__} overrides private {class_path}.{name}: "
                                              "record it in compat")
    assert checked >= 9  # 7 trainers, the VisualDL callback, LARS


def test_no_init_weights_switches_paddlenlp_flag():
    assert compat.init_weights_enabled()
    with compat.no_init_weights():
        assert not compat.init_weights_enabled()
    assert compat.init_weights_enabled()


def test_eager_threads_setter_changes_paddle_threads():
    before = paddle.base.core.get_num_threads() if hasattr(paddle.base.core, "get_num_threads") else None
    compat.set_eager_threads(1)
    if before is not None:
        assert paddle.base.core.get_num_threads() == 1
        compat.set_eager_threads(before)


def test_cpu_capability_probes_answer_booleans():
    for probe in (compat.cpu_supports_avx512f, compat.cpu_has_fast_bf16, compat.onednn_compiled,
                  compat.has_self_dp_attention):
        assert isinstance(probe(), bool)
    assert compat.onednn_compiled(), "the CPU wheel is built with oneDNN; the export path expects it"


def test_self_dp_attention_matches_softmax_attention():
    if not (compat.has_self_dp_attention() and compat.cpu_supports_avx512f()):
        pytest.skip("self_dp_attention needs AVX-512; the matmul attention path runs instead (tested in test_layers)")
    rng = np.random.default_rng(0)
    b, n, h, d = 2, 7, 3, 8
    qkv = rng.standard_normal((b, n, 3, h, d)).astype("float32")
    out = compat.self_dp_attention(paddle.to_tensor(qkv), d**-0.5, h).numpy().reshape(b, n, h, d)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    logits = q @ k.transpose(0, 1, 3, 2) * d**-0.5
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, (weights @ v).transpose(0, 2, 1, 3), atol=1e-5)


def test_batch_norm_and_conv_private_fields():
    bn = paddle.nn.BatchNorm2D(4, epsilon=1e-3)
    mean, variance, epsilon = compat.batch_norm_statistics(bn)
    assert list(mean.shape) == [4] and list(variance.shape) == [4] and epsilon == pytest.approx(1e-3)
    conv = paddle.nn.Conv2D(4, 8, 3, stride=2, padding=1, groups=2)
    twin = paddle.nn.Conv2D(**compat.conv2d_arguments(conv))
    assert twin.weight.shape == conv.weight.shape
    x = paddle.randn([1, 4, 9, 9])
    twin.weight.set_value(conv.weight)
    twin.bias.set_value(conv.bias)
    np.testing.assert_array_equal(twin(x).numpy(), conv(x).numpy())


def test_optimizer_internals():
    layer = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.AdamW(parameters=layer.parameters(), weight_decay=0.1)
    assert list(compat.inner_optimizers(opt)) == [opt]
    assert compat.optimizer_parameters(opt) == list(layer.parameters())
    assert compat.sharded_parameters(opt) is None
    compat.set_weight_decay(opt, 0.0)
    w = layer.weight.numpy().copy()
    layer(paddle.zeros([1, 3])).sum().backward()  # zero input: the weight gradient is zero, only decay would move it
    opt.step()
    np.testing.assert_array_equal(layer.weight.numpy(), w)


def test_loss_scale_reads_grad_scaler():
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024.0)
    assert {"_enable", "_scale"} <= set(vars(scaler)), ("GradScaler keeps its state elsewhere now: "
                                                        "update compat.loss_scale")
    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count():
        assert compat.loss_scale(scaler) == 1024.0
    else:  # Paddle turns the scaler off on CPU places
        assert not scaler.is_enable() and compat.loss_scale(scaler) is None
    assert compat.loss_scale(None) is None
    assert compat.loss_scale(paddle.amp.GradScaler(enable=False)) is None
