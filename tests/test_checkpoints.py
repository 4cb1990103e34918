"""Checkpoint IO and conversion: PaddleMIX round trips, MIM -> classifier, refusals with keys and shapes,
corrupt files, training-checkpoint nesting, and conversion of timm / official layouts checked against timm."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Dict

import numpy as np
import paddle
import pytest

from paddlemix_eva import zoo
from paddlemix_eva.convert import convert_checkpoint
from paddlemix_eva.models import (
    EVA02VisionTransformer,
    EVA02VisionTransformerConfig,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)
from paddlemix_eva.utils.checkpoint import CheckpointError, read_state_dict, save_paddle_state_dict

from peers import import_timm, import_torch, make_sensitive, seeded_images, torch_state_dict

TI = "eva02_Ti_pt_in21k_ft_in1k_p14"
S = "eva02_S_pt_in21k_ft_in1k_p14"
StateDict = Dict[str, np.ndarray]


# ----------------------------------------------------------------------------------------------- helpers
def _numpy_state(model) -> StateDict:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _assert_state_equal(model, expected: StateDict, keys=None) -> None:
    state = _numpy_state(model)
    for key in keys if keys is not None else expected:
        np.testing.assert_array_equal(state[key], expected[key], err_msg=key)


def _logits(model, images: np.ndarray) -> np.ndarray:
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(images)).numpy()


def _mim_config(tiny_eva02_config) -> EVA02VisionTransformerForMIMConfig:
    fields = {k: v for k, v in tiny_eva02_config.to_dict().items() if k in _TINY_FIELDS}
    return EVA02VisionTransformerForMIMConfig(predict_feature_dim=64, **fields)


_TINY_FIELDS = (
    "image_size", "patch_size", "embed_dim", "layers", "num_heads", "mlp_ratio", "qkv_bias", "naiveswiglu",
    "subln", "swiglu", "rope", "intp_freq", "pt_hw_seq_len",
)  # fmt: skip


def _timm_to_official(state: StateDict, depth: int, grid: int, subln: bool) -> Dict[str, object]:
    """Official EVA-02 (asuka) layout from timm's by the inverse of timm's checkpoint_filter_fn, rope buffers
    included, nested like a training checkpoint."""
    torch = import_torch()
    renames = (
        [("attn.q_proj.bias", "attn.q_bias"), ("attn.v_proj.bias", "attn.v_bias"), ("mlp.fc1_g.", "mlp.w1."),
         ("mlp.fc1_x.", "mlp.w2."), ("mlp.norm.", "mlp.ffn_ln."), ("mlp.fc2.", "mlp.w3.")]
        if subln
        else [("mlp.fc1.", "mlp.w12."), ("mlp.fc2.", "mlp.w3.")]
    )  # fmt: skip
    official = {}
    for key, value in state.items():
        for old, new in renames:
            key = key.replace(old, new)
        official[key] = torch.from_numpy(np.array(value))
    gen = torch.Generator().manual_seed(1)
    tables = {"freqs_cos": torch.rand(grid * grid, 64, generator=gen),
              "freqs_sin": torch.rand(grid * grid, 64, generator=gen)}
    for name, table in tables.items():
        official[f"rope.{name}"] = table
        for i in range(depth):
            official[f"blocks.{i}.attn.rope.{name}"] = table.clone()
    return {"model": official, "epoch": 99, "args": {"lr": 1e-3}}


@pytest.fixture(scope="module")
def timm_models():
    """Small timm EVA-02s (2 blocks) made sensitive to layout / RoPE mistakes: Ti (fused SwiGLU) and B (sub-LN)."""
    timm = import_timm()
    torch = import_torch()
    models = {}
    for size, name, classes in (("Ti", "eva02_tiny_patch14_224", 10), ("B", "eva02_base_patch14_224", 7)):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=classes, depth=2).eval()
        make_sensitive(model)
        models[size] = model
    return models


def _save_timm_safetensors(model, path: str) -> str:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


# ---------------------------------------------------------------------------------- (a) PaddleMIX layout
def test_save_pretrained_round_trip(tiny_eva02_config, tmp_path, caplog):
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.save_pretrained(str(tmp_path))
    saved = _numpy_state(model)
    expected = EVA02VisionTransformer._expected_shapes(tiny_eva02_config)
    with caplog.at_level(logging.INFO, logger="paddlemix_eva"):
        checked = EVA02VisionTransformer.check_state_dict(
            read_state_dict(str(tmp_path / "model_state.pdparams")), expected, "saved"
        )
    assert sorted(checked) == sorted(expected) == sorted(saved)
    once_per_process = ("paddlemix_eva.layers.norm", "paddlemix_eva.utils.runtime")  # LayerNorm and thread choices
    assert not [r for r in caplog.records if r.name.startswith("paddlemix_eva") and r.name not in once_per_process
                and r.levelno >= logging.INFO]

    loaded = EVA02VisionTransformer.from_pretrained(str(tmp_path))
    assert sorted(_numpy_state(loaded)) == sorted(saved)
    _assert_state_equal(loaded, saved)
    images = seeded_images(2, 56)
    np.testing.assert_array_equal(_logits(loaded, images), _logits(model, images))


@pytest.mark.parametrize("weights_name", ["model_state.pdparams", "model.safetensors"])
def test_plain_state_dict_file_loads(tiny_eva02_config, tmp_path, weights_name):
    state = _numpy_state(EVA02VisionTransformer(tiny_eva02_config))
    tiny_eva02_config.save_pretrained(str(tmp_path))
    if weights_name.endswith(".pdparams"):
        save_paddle_state_dict(state, str(tmp_path / weights_name))
    else:
        from safetensors.numpy import save_file

        save_file(state, str(tmp_path / weights_name))
    loaded = EVA02VisionTransformer.from_pretrained(str(tmp_path))
    assert sorted(_numpy_state(loaded)) == sorted(state)
    _assert_state_equal(loaded, state)


def test_missing_key_refused_unless_not_strict(tiny_eva02_config, tmp_path, caplog):
    state = _numpy_state(EVA02VisionTransformer(tiny_eva02_config))
    del state["blocks.1.norm1.weight"]
    state["blocks.1.extra.weight"] = np.zeros(3, np.float32)
    tiny_eva02_config.save_pretrained(str(tmp_path))
    save_paddle_state_dict(state, str(tmp_path / "model_state.pdparams"))
    with pytest.raises(CheckpointError) as info:
        EVA02VisionTransformer.from_pretrained(str(tmp_path))
    assert "blocks.1.norm1.weight" in str(info.value) and "blocks.1.extra.weight" in str(info.value)
    assert "strict=False" in str(info.value)

    with caplog.at_level(logging.WARNING, logger="paddlemix_eva"):
        loaded = EVA02VisionTransformer.from_pretrained(str(tmp_path), strict=False)
    assert any("blocks.1.norm1.weight" in r.getMessage() for r in caplog.records)
    _assert_state_equal(loaded, state, keys=[k for k in state if k != "blocks.1.extra.weight"])


# ------------------------------------------------------------------------------------ (b) MIM -> classifier
def test_mim_checkpoint_into_classifier(tiny_eva02_config, tmp_path, caplog):
    mim = EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config))
    mim.save_pretrained(str(tmp_path))
    mim_state = _numpy_state(mim)
    with caplog.at_level(logging.INFO, logger="paddlemix_eva"):
        model = EVA02VisionTransformer.from_pretrained(str(tmp_path), num_classes=10)
    assert model.config.num_classes == 10

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("paddlemix_eva")]
    dropped = [m for m in messages if "dropping" in m]
    assert dropped and all(k in dropped[0] for k in ("mask_token", "lm_head.weight", "lm_head.bias", "norm.weight"))
    fresh = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "afresh" in r.getMessage()]
    assert fresh and all(k in fresh[0] for k in ("fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"))

    trunk = [k for k in mim_state if not k.startswith(("mask_token", "lm_head.", "norm."))]
    assert trunk and sorted(trunk) == sorted(k for k in _numpy_state(model) if not k.startswith(("fc_norm.", "head.")))
    _assert_state_equal(model, mim_state, keys=trunk)
    assert np.isfinite(_logits(model, seeded_images(1, 56))).all()


# ------------------------------------------------------------------------------------ (c) wrong model size
def test_checkpoint_of_another_size_is_refused(tmp_path):
    small = zoo.get_model(S, layers=2)
    ti_config = zoo.build_config(zoo.get_entry(TI), EVA02VisionTransformerConfig, layers=2)
    ti_config.save_pretrained(str(tmp_path))
    save_paddle_state_dict(_numpy_state(small), str(tmp_path / "model_state.pdparams"))
    with pytest.raises(CheckpointError) as info:
        EVA02VisionTransformer.from_pretrained(str(tmp_path))
    message = str(info.value)
    assert "model_state.pdparams" in message
    assert "cls_token: checkpoint [1, 1, 384] vs model [1, 1, 192]" in message
    assert "blocks.0.attn.q_proj.weight: checkpoint [384, 384] vs model [192, 192]" in message
    assert "shape mismatches" in message


# ------------------------------------------------------------------------------ (d) foreign layout in place
@pytest.mark.parametrize(
    "size, layout, weights_name",
    [("Ti", "timm", "model_state.pdparams"), ("B", "timm", "model.safetensors"),
     ("B", "official", "model_state.pdparams")],
)
def test_foreign_layout_where_paddlemix_expected(timm_models, tmp_path, size, layout, weights_name):
    model = timm_models[size]
    src = _save_timm_safetensors(model, str(tmp_path / "timm.safetensors"))
    model_dir = tmp_path / "model"
    convert_checkpoint(src, "timm", out=str(model_dir))  # a correct config.json next to the foreign weights
    os.remove(model_dir / "model_state.pdparams")
    state = torch_state_dict(model)
    if layout == "official":
        state = {k: v.numpy() for k, v in _timm_to_official(state, 2, 16, subln=True)["model"].items()}
    if weights_name.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file(state, str(model_dir / weights_name))
    else:
        save_paddle_state_dict(state, str(model_dir / weights_name))
    with pytest.raises(CheckpointError) as info:
        EVA02VisionTransformer.from_pretrained(str(model_dir))
    message = str(info.value)
    assert "paddlemix-eva convert" in message
    assert weights_name in message


# ---------------------------------------------------------------------------------- (e) corrupt weight files
def _real_pdparams(tiny_eva02_config, path: str) -> bytes:
    save_paddle_state_dict(_numpy_state(EVA02VisionTransformer(tiny_eva02_config)), path)
    with open(path, "rb") as f:
        return f.read()


def _real_safetensors(tiny_eva02_config, path: str) -> bytes:
    from safetensors.numpy import save_file

    save_file(_numpy_state(EVA02VisionTransformer(tiny_eva02_config)), path)
    with open(path, "rb") as f:
        return f.read()


_CORRUPTIONS = {
    "truncated-pdparams": ("model_state.pdparams", lambda real: real[: len(real) // 2]),
    "empty-pdparams": ("model_state.pdparams", lambda real: b""),
    "text-pdparams": ("model_state.pdparams", lambda real: b"<html>503 Service Unavailable</html>\n" * 40),
    # a garbage pickle header declaring a huge payload: paddle.load lets MemoryError / OverflowError through
    "huge-declared-size": ("model_state.pdparams",
                           lambda real: b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + real[:64]),
    "impossible-size": ("model_state.pdparams",
                        lambda real: b"\x80\x04\x8e" + (2**64 - 1).to_bytes(8, "little") + real[:64]),
    "truncated-safetensors": ("model.safetensors", lambda real: real[: len(real) // 2]),
    "garbage-safetensors": ("model.safetensors", lambda real: np.random.default_rng(0).bytes(len(real))),
}


@pytest.mark.parametrize("case", sorted(_CORRUPTIONS))
def test_corrupt_weight_file(tiny_eva02_config, tmp_path, case):
    weights_name, corrupt = _CORRUPTIONS[case]
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    writer = _real_safetensors if weights_name.endswith(".safetensors") else _real_pdparams
    real = writer(tiny_eva02_config, str(real_dir / weights_name))
    model_dir = tmp_path / "model"
    tiny_eva02_config.save_pretrained(str(model_dir))
    path = model_dir / weights_name
    path.write_bytes(corrupt(real))

    with pytest.raises(CheckpointError) as info:
        read_state_dict(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError) as info:
        EVA02VisionTransformer.from_pretrained(str(model_dir))
    assert str(path) in str(info.value)


def test_truncated_torch_file(tmp_path):
    torch = import_torch()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(64, 64)}}, str(path))
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        read_state_dict(str(path))
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------- (f) reading, nesting
def _tensors(torch) -> Dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=gen), "a.bias": torch.randn(3, generator=gen),
            "b": torch.randn(2, 2, 2, generator=gen)}


@pytest.mark.parametrize(
    "wrap",
    [
        "plain",
        "model",
        "module",
        "model_ema",
        "state_dict",
        "module-prefix",
        "model+module-prefix",
    ],
)
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_read_torch_checkpoint_nesting(tmp_path, wrap, suffix):
    torch = import_torch()
    tensors = _tensors(torch)
    decoy = {k: torch.zeros_like(v) for k, v in tensors.items()}
    prefixed = {"module." + k: v for k, v in tensors.items()}
    obj = {
        "plain": tensors,
        "model": {"model": tensors, "optimizer": {"state": {}}, "epoch": 3},
        "module": {"module": tensors},
        "model_ema": {"model": decoy, "model_ema": tensors, "epoch": 3},  # EMA weights are what upstream publishes
        "state_dict": {"state_dict": tensors, "hyper_parameters": {"lr": 0.1}},
        "module-prefix": prefixed,
        "model+module-prefix": {"model": prefixed, "args": None},
    }[wrap]
    path = str(tmp_path / f"ckpt{suffix}")
    torch.save(obj, path)
    state = read_state_dict(path)
    assert sorted(state) == sorted(tensors)
    for key, value in tensors.items():
        assert isinstance(state[key], np.ndarray)
        np.testing.assert_array_equal(state[key], value.numpy())


def test_module_prefix_kept_when_not_on_every_key(tmp_path):
    torch = import_torch()
    path = str(tmp_path / "ckpt.pt")
    torch.save({"module.a": torch.ones(2), "b": torch.ones(2)}, path)
    assert sorted(read_state_dict(path)) == ["b", "module.a"]


def test_no_tensors_in_checkpoint(tmp_path):
    torch = import_torch()
    path = str(tmp_path / "ckpt.pt")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="no tensors found") as info:
        read_state_dict(path)
    assert path in str(info.value)


def test_read_bfloat16_torch_as_float32(tmp_path):
    torch = import_torch()
    value = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    path = str(tmp_path / "ckpt.pt")
    torch.save({"model_ema": {"w": value}}, path)
    state = read_state_dict(path)
    assert state["w"].dtype == np.float32
    np.testing.assert_array_equal(state["w"], value.float().numpy())


def test_read_nested_pdparams(tmp_path):
    inner = {"w": paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))}
    path = str(tmp_path / "ckpt.pdparams")
    paddle.save({"model": {"module." + k: v for k, v in inner.items()}, "epoch": 1}, path)
    state = read_state_dict(path)
    assert sorted(state) == ["w"]
    np.testing.assert_array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_read_safetensors_and_npz_without_torch(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    arrays = {"x.weight": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), "y": np.arange(5)}
    save_file(arrays, str(tmp_path / "w.safetensors"))
    np.savez(str(tmp_path / "w.npz"), **arrays)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without torch installed
    for name in ("w.safetensors", "w.npz"):
        state = read_state_dict(str(tmp_path / name))
        assert sorted(state) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(state[key], value)


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="unknown weight file type") as info:
        read_state_dict(str(path))
    assert str(path) in str(info.value) and ".safetensors" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope.pdparams"):
        read_state_dict(str(tmp_path / "nope.pdparams"))


def test_reading_torch_file_without_torch(tmp_path, monkeypatch):
    torch = import_torch()
    tensors = _tensors(torch)
    path = str(tmp_path / "ckpt.pth")
    torch.save({"model": tensors}, path)
    monkeypatch.setitem(sys.modules, "torch", None)  # torch.save zips are read by paddlemix_eva.serialization alone
    state = read_state_dict(path)
    assert sorted(state) == sorted(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(state[key], value.numpy())


# ------------------------------------------------------------------------------------------ (g) conversion
@pytest.mark.parametrize("size", ["Ti", "B"])
@pytest.mark.parametrize("layout", ["timm", "official"])
def test_convert_matches_timm(timm_models, tmp_path, size, layout):
    ref = timm_models[size]
    if layout == "timm":
        src = _save_timm_safetensors(ref, str(tmp_path / "src.safetensors"))
    else:
        torch = import_torch()
        src = str(tmp_path / "src.pth")
        torch.save(_timm_to_official(torch_state_dict(ref), depth=2, grid=16, subln=size == "B"), src)
    out = convert_checkpoint(src, layout, out=str(tmp_path / "out"))

    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)
    assert saved["architectures"] == ["EVA02VisionTransformer"]
    model = EVA02VisionTransformer.from_pretrained(out)
    config = model.config
    embed_dim = {"Ti": 192, "B": 768}[size]
    assert (config.embed_dim, config.num_heads, config.layers) == (embed_dim, embed_dim // 64, 2)
    assert (config.image_size, config.patch_size, config.grid_size) == (224, 14, 16)
    assert config.num_classes == ref.num_classes
    assert config.mlp_hidden_dim == {"Ti": 512, "B": 2048}[size]
    assert config.use_swiglu and config.qkv_bias and config.use_mean_pooling
    assert config.use_ffn_ln == (size == "B")
    assert (config.swiglu, config.naiveswiglu, config.subln) == ((True, False, False) if size == "Ti"
                                                                  else (False, True, True))
    assert not any("rope" in k for k in model.state_dict())

    torch = import_torch()
    images = seeded_images(2, 224, seed=3)
    with torch.no_grad():
        expected = ref(torch.from_numpy(images)).numpy()
    got = _logits(model, images)
    assert np.abs(expected).max() > 0.1, "reference logits too small to tell layouts apart"
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_detect_format(timm_models, tiny_eva02_config):
    from paddlemix_eva.convert.keymaps import detect_format

    for size, subln in (("Ti", False), ("B", True)):
        timm_state = torch_state_dict(timm_models[size])
        assert detect_format(timm_state) == "timm", size
        official = _timm_to_official(timm_state, depth=2, grid=16, subln=subln)["model"]
        assert detect_format({k: v.numpy() for k, v in official.items()}) == "official", size
    fused = dict(tiny_eva02_config.to_dict(), swiglu=True, naiveswiglu=False, subln=False)
    fused_config = EVA02VisionTransformerConfig(**{k: v for k, v in fused.items() if k in _TINY_FIELDS})
    for config in (tiny_eva02_config, fused_config):
        assert detect_format(_numpy_state(EVA02VisionTransformer(config))) == "paddlemix"
    assert detect_format(_numpy_state(EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config)))) == "paddlemix"


def test_convert_in_memory_state_dict(timm_models, tmp_path):
    ref = timm_models["Ti"]
    out = convert_checkpoint(torch_state_dict(ref), "timm", out=str(tmp_path / "out"))
    state = read_state_dict(os.path.join(out, "model_state.pdparams"))
    weight = ref.state_dict()["blocks.1.attn.qkv.weight"].numpy()
    np.testing.assert_array_equal(state["blocks.1.attn.k_proj.weight"], weight[192:384].T)
    assert "blocks.1.attn.k_proj.bias" not in state
    fc1 = ref.state_dict()["blocks.0.mlp.fc1.weight"].numpy()
    np.testing.assert_array_equal(state["blocks.0.mlp.w1.weight"], fc1[:512].T)
    np.testing.assert_array_equal(state["blocks.0.mlp.w2.weight"], fc1[512:].T)


def test_convert_refuses_wrong_format(timm_models, tmp_path):
    src = _save_timm_safetensors(timm_models["B"], str(tmp_path / "src.safetensors"))
    with pytest.raises(CheckpointError, match="--format timm"):
        convert_checkpoint(src, "paddlemix", out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="unknown --format"):
        convert_checkpoint(src, "hf", out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["mim-subln", "classifier-fused-swiglu"])
def test_convert_paddlemix_checkpoint(tiny_eva02_config, tmp_path, kind):
    if kind == "mim-subln":
        model_class, model = EVA02VisionTransformerForMIM, EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config))
    else:
        fields = dict(tiny_eva02_config.to_dict(), swiglu=True, naiveswiglu=False, subln=False)
        config = EVA02VisionTransformerConfig(**{k: v for k, v in fields.items()
                                                 if k in _TINY_FIELDS + ("num_classes",)})
        model_class, model = EVA02VisionTransformer, EVA02VisionTransformer(config)
    state = _numpy_state(model)
    src = str(tmp_path / "ckpt.pdparams")
    save_paddle_state_dict(state, src)
    out = convert_checkpoint(src, "paddlemix", out=str(tmp_path / "out"))
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["architectures"] == [model_class.__name__]
    loaded = model_class.from_pretrained(out)
    if kind == "mim-subln":
        assert loaded.config.predict_feature_dim == 64 and loaded.config.use_ffn_ln
    else:
        assert loaded.config.swiglu and not loaded.config.use_ffn_ln and loaded.config.num_classes == 10
    assert sorted(_numpy_state(loaded)) == sorted(state)
    _assert_state_equal(loaded, state)


def _timm_full_tiny(classes: int, image_size: int, depth: int = 12):
    timm = import_timm()
    torch = import_torch()
    torch.manual_seed(0)
    return timm.create_model(f"eva02_tiny_patch14_{image_size}", pretrained=False, num_classes=classes, depth=depth)


def test_convert_with_zoo_name(tmp_path, caplog):
    ref = _timm_full_tiny(1000, 336)
    src = _save_timm_safetensors(ref, str(tmp_path / "ti.safetensors"))
    out = convert_checkpoint(src, "timm", out=str(tmp_path / "out"), model=TI)
    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)
    for key, value in zoo.get_entry(TI).config.items():
        assert saved[key] == value, key
    loaded = EVA02VisionTransformer.from_pretrained(out)
    np.testing.assert_array_equal(loaded.head.weight.numpy(), ref.head.weight.detach().numpy().T)

    # weights at 224 px into the 336 px zoo config: pos_embed resampled, with a warning
    src224 = _save_timm_safetensors(_timm_full_tiny(1000, 224), str(tmp_path / "ti224.safetensors"))
    with caplog.at_level(logging.WARNING, logger="paddlemix_eva"):
        out = convert_checkpoint(src224, "timm", out=str(tmp_path / "out224"), model=TI)
    assert any("interpolating" in r.getMessage() and "16x16" in r.getMessage() for r in caplog.records)
    assert read_state_dict(os.path.join(out, "model_state.pdparams"))["pos_embed"].shape == (1, 577, 192)


def test_convert_with_zoo_name_refuses_mismatch(timm_models, tmp_path):
    src = _save_timm_safetensors(_timm_full_tiny(10, 336), str(tmp_path / "ti10.safetensors"))
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(src, "timm", out=str(tmp_path / "out"), model=TI)
    assert "head.weight: checkpoint [192, 10] vs model [192, 1000]" in str(info.value)
    assert "head.bias: checkpoint [10] vs model [1000]" in str(info.value)

    shallow = _save_timm_safetensors(_timm_full_tiny(1000, 336, depth=2), str(tmp_path / "shallow.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks\.10\.attn\.k_proj\.weight'") as info:
        convert_checkpoint(shallow, "timm", out=str(tmp_path / "out"), model=TI)
    assert "'blocks.0." not in str(info.value) and "'blocks.1." not in str(info.value)
    wide = _save_timm_safetensors(timm_models["B"], str(tmp_path / "wide.safetensors"))
    with pytest.raises(CheckpointError, match=r"q_proj\.weight: checkpoint \[768, 768\] vs model \[192, 192\]"):
        convert_checkpoint(wide, "timm", out=str(tmp_path / "out"), model=TI)
    assert not (tmp_path / "out").exists()


def test_convert_p14to16(timm_models, tmp_path):
    torch = import_torch()
    import torch.nn.functional as F

    ref = timm_models["Ti"]
    src = _save_timm_safetensors(ref, str(tmp_path / "src.safetensors"))
    out = convert_checkpoint(src, "timm", out=str(tmp_path / "out"), p14to16=True)
    state = read_state_dict(os.path.join(out, "model_state.pdparams"))

    kernel = ref.patch_embed.proj.weight.detach()
    expected_kernel = F.interpolate(kernel, size=(16, 16), mode="bicubic", align_corners=False).numpy()
    assert state["patch_embed.proj.weight"].shape == (192, 3, 16, 16)
    np.testing.assert_allclose(state["patch_embed.proj.weight"], expected_kernel, atol=1e-6, rtol=0)

    pos = ref.pos_embed.detach()
    grid = pos[:, 1:].reshape(1, 16, 16, 192).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    expected_pos = torch.cat([pos[:, :1], grid.reshape(1, 196, 192)], dim=1).numpy()
    assert state["pos_embed"].shape == (1, 197, 192)
    np.testing.assert_allclose(state["pos_embed"], expected_pos, atol=1e-6, rtol=0)

    model = EVA02VisionTransformer.from_pretrained(out)
    assert (model.config.patch_size, model.config.grid_size, model.config.image_size) == (16, 14, 224)
    logits = _logits(model, seeded_images(2, 224))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()

    with pytest.raises(ValueError, match="patch-14"):
        convert_checkpoint(os.path.join(out, "model_state.pdparams"), "paddlemix", out=str(tmp_path / "x"),
                           p14to16=True)
