"""No code from a file we read runs (`paddlemix_eva.serialization`).

For every format a payload file (a pickle whose `__reduce__` would create a marker file) is refused with the
global it names, through `read_state_dict`, `from_pretrained`, the CLI and a trainer resume, and the marker never
appears, while the framework's own loader does run it (the payload is live). Real files written by `paddle.save`
/ `torch.save` load exactly as `paddle.load(return_numpy=True)` / `torch.load(weights_only=True)` return them.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import zipfile
from typing import Any, Callable, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.utils.checkpoint import CheckpointError, read_state_dict
from paddlemix_eva.utils.serialization import (
    BASE_GLOBALS,
    PADDLE_GLOBALS,
    PaddleGeneratorState,
    UnsafeFileError,
    load_npy,
    load_paddle,
    load_torch,
    restricted_load,
    verify_checkpoint_dir,
)

from peers import import_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------------- payloads
class Payload:
    """Unpickling it calls `func(*args)`: what a malicious weight file does."""

    def __init__(self, func: Callable, *args: Any):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payload(kind: str, marker) -> Tuple[Payload, str]:
    """A payload that creates `marker` when unpickled, and the `module.name` global its pickle names."""
    marker = str(marker)
    return {
        "os.system": (Payload(os.system, f"touch {shlex.quote(marker)}"), f"{os.system.__module__}.system"),
        "exec": (Payload(exec, f"open({marker!r}, 'w').close()"), "builtins.exec"),
        "eval": (Payload(eval, f"open({marker!r}, 'w').close()"), "builtins.eval"),
        "open": (Payload(open, marker, "w"), "io.open"),
    }[kind]


def assert_refused(load: Callable[[str], Any], path, global_name: str, marker, unsafe_load: Callable[[str], Any]):
    """`load` refuses `path` naming the file and `global_name` without creating `marker`; `unsafe_load` (the
    framework's own loader) would have created it."""
    with pytest.raises(UnsafeFileError) as info:
        load(str(path))
    message = str(info.value)
    assert str(path) in message and f"`{global_name}`" in message and ".safetensors" in message, message
    assert "\n" not in message
    assert not os.path.exists(marker), "the payload ran"
    try:
        unsafe_load(str(path))
    except Exception:  # noqa: BLE001 - the payload's return value may not be what the loader expects
        pass
    assert os.path.exists(marker), "control: the framework's own loader should have run the payload"


def paddle_tensor(array: np.ndarray, dtype: str = None) -> paddle.Tensor:
    tensor = paddle.to_tensor(array)
    return tensor.astype(dtype) if dtype else tensor


def _paddle_load(path: str):
    return paddle.load(path, return_numpy=True)


def _torch_load_unsafe(path: str):
    return import_torch().load(path, weights_only=False)


# --------------------------------------------------------------------------------- refusals, every format
@pytest.mark.parametrize("kind", ["os.system", "exec", "eval", "open"])
def test_pdparams_payload_is_refused(tmp_path, kind):
    marker = tmp_path / "ran"
    evil, name = payload(kind, marker)
    path = tmp_path / "model_state.pdparams"
    paddle.save({"w": paddle.ones([2, 2]), "evil": evil}, str(path))
    assert_refused(read_state_dict, path, name, marker, _paddle_load)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_zip_payload_is_refused(tmp_path, suffix):
    torch = import_torch()
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    path = tmp_path / f"ckpt{suffix}"
    torch.save({"model": {"w": torch.ones(2, 2)}, "evil": evil}, str(path))
    assert zipfile.is_zipfile(path)
    assert_refused(read_state_dict, path, name, marker, _torch_load_unsafe)


def test_legacy_torch_payload_is_refused(tmp_path):
    torch = import_torch()
    marker = tmp_path / "ran"
    evil, name = payload("exec", marker)
    path = tmp_path / "legacy.pth"
    torch.save({"model": {"w": torch.ones(2, 2)}, "evil": evil}, str(path), _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert_refused(read_state_dict, path, name, marker, _torch_load_unsafe)


def test_benign_legacy_torch_file_is_refused_with_advice(tmp_path):
    torch = import_torch()
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2, 2)}, str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy") as info:
        read_state_dict(str(path))
    assert not isinstance(info.value, UnsafeFileError)
    assert str(path) in str(info.value) and "re-save" in str(info.value) and ".safetensors" in str(info.value)


def test_plain_pickle_named_like_a_torch_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    path = tmp_path / "weights.bin"
    with open(path, "wb") as f:
        pickle.dump({"w": np.ones(3), "evil": evil}, f)
    assert_refused(read_state_dict, path, name, marker, lambda p: pickle.load(open(p, "rb")))


def test_npz_object_array_payload_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    path = tmp_path / "weights.npz"
    objects = np.empty(1, dtype=object)
    objects[0] = evil
    np.savez(str(path), w=np.ones(3, np.float32), evil=objects)
    assert_refused(read_state_dict, path, name, marker, lambda p: dict(np.load(p, allow_pickle=True)))


def test_npz_object_array_without_payload_is_refused_as_not_numeric(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(str(path), w=np.ones(3, np.float32), names=np.array(["a", None], dtype=object))
    with pytest.raises(CheckpointError, match="Python objects") as info:
        read_state_dict(str(path))
    assert not isinstance(info.value, UnsafeFileError) and str(path) in str(info.value)


def test_zeroshot_cache_payload_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    path = tmp_path / "zeroshot_classifier_0.npy"
    objects = np.empty(1, dtype=object)
    objects[0] = evil
    np.save(str(path), objects)
    assert_refused(load_npy, path, name, marker, lambda p: np.load(p, allow_pickle=True))
    np.save(str(path), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(load_npy(str(path)), np.eye(3, dtype=np.float32))


def test_from_pretrained_refuses_a_payload_in_model_state(tiny_eva02_config, tmp_path):
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    model_dir = tmp_path / "model"
    EVA02VisionTransformer(tiny_eva02_config).save_pretrained(str(model_dir))
    weights = model_dir / "model_state.pdparams"
    state = paddle.load(str(weights))
    state["evil"] = evil
    paddle.save(state, str(weights))
    assert_refused(EVA02VisionTransformer.from_pretrained, model_dir, name, marker,
                   lambda _: paddle.load(str(weights)))


def test_cli_convert_refuses_a_payload_with_one_line(tmp_path):
    torch = import_torch()
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    src = tmp_path / "timm.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "evil": evil}, str(src))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "paddlemix_eva.cli", "convert", str(src), "--format", "timm",
                             "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "refused to load" in line]
    assert len(errors) == 1 and str(src) in errors[0] and f"`{name}`" in errors[0], result.stderr
    assert not marker.exists() and not out.exists()


# ------------------------------------------------------------------------------------- trainer resumes
class TinyRegression(nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _tiny_trainer(output_dir: str, max_steps: int = 4):
    from paddlemix_eva.trainer.base import EVATrainer, EVATrainingArguments

    class RegressionTrainer(EVATrainer):
        def compute_loss(self, model, inputs, return_outputs=False):
            out = model(inputs["x"])
            loss = ((out - inputs["labels"]) ** 2).mean()
            return (loss, out) if return_outputs else loss

    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal(4).astype("float32"), "labels": rng.standard_normal(2).astype("float32")}
            for _ in range(16)]
    args = EVATrainingArguments(output_dir=output_dir, per_device_train_batch_size=4, max_steps=max_steps,
                                save_steps=2, logging_steps=1, learning_rate=0.1, report_to=[], tensorboard=False,
                                seed=0)
    paddle.seed(0)
    with paddle.utils.unique_name.guard():  # parameter names as in a fresh process (optimizer states use them)
        model = TinyRegression()
    return RegressionTrainer(model=model, args=args, train_dataset=data)


def _train(trainer, resume=None):
    with paddle.utils.unique_name.guard():  # optimizer accumulator names, likewise
        return trainer.train(resume_from_checkpoint=resume)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """An output dir with `checkpoint-2` of a real 2-step EVATrainer run (model, optimizer, scheduler, RNG)."""
    root = tmp_path_factory.mktemp("trained") / "run"
    _train(_tiny_trainer(str(root), max_steps=2))
    assert (root / "checkpoint-2" / "rng_state.pth").is_file()
    return root


def _copy_run(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


RESUME_FILES = ["model_state.pdparams", "optimizer.pdopt", "rng_state.pth", "scheduler.pdparams"]


@pytest.mark.parametrize("how", ["path", "last"])
@pytest.mark.parametrize("file", RESUME_FILES)
def test_resume_refuses_a_payload_in_any_checkpoint_pickle(trained_run, tmp_path, file, how):
    run = _copy_run(trained_run, tmp_path)
    target = run / "checkpoint-2" / file
    marker = tmp_path / "ran"
    evil, name = payload("os.system", marker)
    content = paddle.load(str(target), return_numpy=True)
    content["evil"] = evil
    paddle.save(content, str(target))
    trainer = _tiny_trainer(str(run))
    resume = str(run / "checkpoint-2") if how == "path" else True
    assert_refused(lambda _: _train(trainer, resume), target, name, marker,
                   lambda p: paddle.load(p))


def test_real_trainer_checkpoint_verifies_reads_like_paddle_and_resumes(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    checkpoint = run / "checkpoint-2"
    checked = verify_checkpoint_dir(str(checkpoint))
    assert sorted(os.path.basename(f) for f in checked) == sorted(RESUME_FILES)  # training_args.bin is not read
    for file in RESUME_FILES:
        path = str(checkpoint / file)
        mine, ref = load_paddle(path, rng_state=file.startswith("rng_state")), paddle.load(path, return_numpy=True)
        if file.startswith("rng_state"):
            assert isinstance(mine["cpu"], PaddleGeneratorState)
            assert mine["cpu"].state == ref["cpu"].__getstate__()
            assert [s.state for s in mine["cuda"]] == [s.__getstate__() for s in ref["cuda"]]
            mine = {k: v for k, v in mine.items() if k not in ("cpu", "cuda")}
            ref = {k: v for k, v in ref.items() if k not in ("cpu", "cuda")}
        assert_same_tree(mine, ref)
    trainer = _tiny_trainer(str(run))
    _train(trainer, str(checkpoint))
    assert trainer.state.global_step == 4 and (run / "checkpoint-4").is_dir()


def test_rng_states_are_admitted_only_in_rng_state_files(trained_run, tmp_path):
    copy = tmp_path / "model_state.pdparams"
    shutil.copy(trained_run / "checkpoint-2" / "rng_state.pth", copy)
    with pytest.raises(UnsafeFileError, match="paddle.base.libpaddle.GeneratorState"):
        load_paddle(str(copy))


# ------------------------------------------------------------------------------------ the allowlist itself
def _restricted(data: bytes, allowed=BASE_GLOBALS, encoding: str = "ASCII"):
    return restricted_load(io.BytesIO(data), "crafted.pkl", allowed, encoding=encoding)


@pytest.mark.parametrize(
    "data, name",
    [
        (b"cbuiltins\ngetattr\n.", "builtins.getattr"),
        (b"c__builtin__\n__import__\n.", "builtins.__import__"),
        (b"cos\nsystem\n.", "os.system"),
        (b"cnumpy\nload\n.", "numpy.load"),
        (b"ccopyreg\n_reconstructor\n.", "copyreg._reconstructor"),
        (b"ctorch._utils\n_rebuild_tensor_v2\n.", "torch._utils._rebuild_tensor_v2"),  # torch files only
    ],
)
def test_globals_outside_the_allowlist_are_refused(data, name):
    with pytest.raises(UnsafeFileError) as info:
        _restricted(data)
    assert f"`{name}`" in str(info.value) and "crafted.pkl" in str(info.value)


def test_stand_ins_accept_only_what_the_frameworks_write():
    import codecs

    # eval("data", {"data": array}) is how paddle.save writes a DenseTensor; any other expression is refused
    with pytest.raises(UnsafeFileError, match="builtins.eval"):
        _restricted(pickle.dumps(Payload(eval, "1 + 1"), protocol=2), PADDLE_GLOBALS, "latin1")
    array = np.arange(3.0)
    dense = _restricted(pickle.dumps(Payload(eval, "data", {"data": array}), protocol=2), PADDLE_GLOBALS, "latin1")
    np.testing.assert_array_equal(dense, array)
    # _codecs.encode is how protocol 2 writes bytes, with latin1 only
    with pytest.raises(UnsafeFileError, match="_codecs.encode"):
        _restricted(pickle.dumps(Payload(codecs.encode, "x", "rot13")))
    assert _restricted(pickle.dumps({"b": b"\x00\xff"}, protocol=2)) == {"b": b"\x00\xff"}
    # a pickle cannot set attributes on the shared stand-ins (BUILD on a global)
    with pytest.raises(UnsafeFileError):
        _restricted(b"c_codecs\nencode\n}b.")


# ------------------------------------------------------------------------------ real paddle.save files
def assert_same_tree(mine: Any, ref: Any, where: str = "") -> None:
    assert type(mine) is type(ref), (where, type(mine), type(ref))
    if isinstance(ref, dict):
        assert list(mine) == list(ref), where
        for key in ref:
            assert_same_tree(mine[key], ref[key], f"{where}/{key}")
    elif isinstance(ref, (list, tuple)):
        assert len(mine) == len(ref), where
        for i, (a, b) in enumerate(zip(mine, ref)):
            assert_same_tree(a, b, f"{where}/{i}")
    elif isinstance(ref, np.ndarray):
        assert mine.dtype == ref.dtype and mine.shape == ref.shape, (where, mine.dtype, ref.dtype)
        np.testing.assert_array_equal(mine, ref, err_msg=where)
    else:
        assert mine == ref, where


def _paddle_tensors():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 5)).astype(np.float32)
    return {
        "f32": paddle_tensor(base),
        "f16": paddle_tensor(base, "float16"),
        "bf16": paddle_tensor(base, "bfloat16"),  # paddle.load(return_numpy=True) gives its uint16 bits
        "i64": paddle_tensor(np.arange(7, dtype=np.int64)),
        "i32": paddle_tensor(np.arange(3, dtype=np.int32)),
        "b": paddle_tensor(np.array([True, False])),
        "f64": paddle_tensor(base.astype(np.float64)),
        "scalar": paddle_tensor(np.float32(2.5)),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("layout", ["state_dict", "nested", "list", "dense", "single"])
def test_paddle_save_files_read_like_paddle_load(tmp_path, layout, protocol):
    tensors = _paddle_tensors()
    obj = {
        "state_dict": tensors,
        # an optimizer / training checkpoint: tensors in nested dicts beside plain values (pickled as (name, array))
        "nested": {"model": tensors, "opt": {"moments": [tensors["f32"], (tensors["i64"], 1)], "lr": 0.1,
                                             "LR_Scheduler": {"last_epoch": 3}},
                   "epoch": 1, "ids": {1, 2}, "od": collections.OrderedDict(a=tensors["f16"]), "name": "x"},
        "list": [tensors["f32"], tensors["bf16"]],
        "dense": {"d": tensors["f32"].value().get_tensor(), "x": {"y": tensors["i64"].value().get_tensor()}},
        "single": tensors["f32"],
    }[layout]
    path = str(tmp_path / "file.pdparams")
    paddle.save(obj, path, protocol=protocol)
    assert_same_tree(load_paddle(path), paddle.load(path, return_numpy=True))
    if layout == "state_dict":
        state = read_state_dict(path)
        assert sorted(state) == sorted(tensors)
        assert state["bf16"].dtype == np.uint16  # as before: paddle's bfloat16 bits are kept


def test_paddle_big_tensor_slices_are_joined_like_paddle_load(tmp_path):
    """paddle.save (protocol 2/3) splits tensors over 1 GiB into slices; written here by hand at a small size."""
    whole = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = whole.reshape(-1)
    obj = {"small": np.ones(2, np.float32), "big@@.0": flat[:10], "big@@.1": flat[10:20], "big@@.2": flat[20:],
           "UnpackBigParamInfor@@": {"big": {"OriginShape": (2, 3, 4), "slices": ["big@@.0", "big@@.1", "big@@.2"]}},
           "StructuredToParameterName@@": {"small": "s_0", "big": "b_0"}}
    path = str(tmp_path / "big.pdparams")
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    mine = load_paddle(path)
    assert_same_tree(mine, paddle.load(path, return_numpy=True))
    assert sorted(mine) == ["big", "small"]
    np.testing.assert_array_equal(mine["big"], whole)


# ------------------------------------------------------------------------------- real torch.save files
def _torch_as_numpy(value):
    torch = import_torch()
    if isinstance(value, torch.Tensor):
        value = value.detach().resolve_conj().resolve_neg()
        return value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    if isinstance(value, dict):
        return type(value)((k, _torch_as_numpy(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_torch_as_numpy(v) for v in value)
    return value


def _torch_objects():
    torch = import_torch()
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=gen)
    shared = torch.randn(10, generator=gen)
    state = collections.OrderedDict(
        f32=base, f16=base.half(), bf16=base.bfloat16(), i64=torch.arange(10), i32=torch.arange(4, dtype=torch.int32),
        i8=torch.arange(-3, 3, dtype=torch.int8), u8=torch.arange(5, dtype=torch.uint8), f64=base.double(),
        b=torch.tensor([True, False, True]), u16=torch.tensor([0, 7, 65535], dtype=torch.uint16),
        c64=torch.randn(3, dtype=torch.complex64, generator=gen),
        # views: slices, transposes, strided, a row, a 0-d element, expanded, empty; bf16 view of a bf16 storage
        view=base[1:4, 2:7], t=base.t(), strided=base[::2, ::3], row=base[2], scalar=base[0, 0],
        expand=torch.ones(3, 1).expand(3, 4), empty=torch.empty(0, 3), bf16_view=base.bfloat16()[1:3, ::2],
        # several tensors viewing one storage, the same tensor twice (tied weights)
        shared_a=shared[:4], shared_b=shared[4:], tied=base,
        conj=torch.randn(2, dtype=torch.complex64, generator=gen).conj(), neg=torch._neg_view(base[:2]),
        param=torch.nn.Parameter(base.clone()), frozen=torch.nn.Parameter(base[0].clone(), requires_grad=False),
    )
    return {
        "state_dict": state,
        "nested": {"model": state, "optimizer": {"state": {0: {"exp_avg": base}}, "param_groups": [{"lr": 0.1}]},
                   "epoch": 3, "args": {"lr": 1e-3, "name": "x"}, "meta": (None, 1.5, "s", b"raw")},
        "tensor": base[1:],
    }


@pytest.mark.parametrize("layout", ["state_dict", "nested", "tensor"])
def test_torch_save_files_read_like_torch_load_weights_only(tmp_path, layout):
    torch = import_torch()
    path = str(tmp_path / "ckpt.pt")
    torch.save(_torch_objects()[layout], path)
    assert_same_tree(load_torch(path), _torch_as_numpy(torch.load(path, weights_only=True)))


def test_training_checkpoint_with_saved_arguments_reads_its_weights(tmp_path):
    """timm / DeiT / EVA training scripts save `'args': argparse.Namespace(...)` next to the model."""
    import argparse

    torch = import_torch()
    path = str(tmp_path / "checkpoint.pth")
    weights = {"head.weight": torch.randn(3, 4), "head.bias": torch.zeros(3)}
    torch.save({"model": weights, "epoch": 7, "args": argparse.Namespace(lr=5e-4, model="deit_small")}, path)
    state = read_state_dict(path)
    np.testing.assert_array_equal(state["head.weight"], weights["head.weight"].numpy())
    args = load_torch(path)["args"]
    assert (args.lr, args.model) == (5e-4, "deit_small") and not isinstance(args, argparse.Namespace)


def test_torch_file_that_declares_big_endian_is_byteswapped_like_torch(tmp_path):
    torch = import_torch()
    little, big = str(tmp_path / "little.pt"), str(tmp_path / "big.pt")
    torch.save(_torch_objects()["state_dict"], little)
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = b"big" if info.filename.endswith("/byteorder") else src.read(info)
            dst.writestr(info.filename, data)
    mine, ref, native = load_torch(big), _torch_as_numpy(torch.load(big, weights_only=True)), load_torch(little)
    # torch swaps by storage type, so it leaves tensors of the newer dtypes (untyped storages: uint16/32/64)
    # unswapped; they are swapped here by their dtype
    assert_same_tree(mine.pop("u16"), native["u16"].byteswap())
    ref.pop("u16")
    assert_same_tree(mine, ref)
    assert not np.array_equal(mine["f32"], native["f32"])


class _StorageRef:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


def _forged_torch_zip(path: str, offset: int, size: tuple, stride: tuple, numel: int, record_bytes: int) -> None:
    """A torch zip written by hand: one float tensor view (offset, size, stride) of a storage of `numel`."""
    torch = import_torch()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
            return None

    tensor = Payload(torch._utils._rebuild_tensor_v2, _StorageRef("0", numel), offset, size, stride, False,
                     collections.OrderedDict())
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": tensor})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("forged/data.pkl", buffer.getvalue())
        archive.writestr("forged/byteorder", sys.byteorder)
        archive.writestr("forged/data/0", np.arange(record_bytes // 4, dtype=np.float32).tobytes())


def test_forged_torch_views_cannot_read_past_their_storage(tmp_path):
    path = str(tmp_path / "forged.pt")
    _forged_torch_zip(path, offset=2, size=(2, 3), stride=(3, 1), numel=8, record_bytes=32)
    np.testing.assert_array_equal(read_state_dict(path)["w"], np.arange(2, 8, dtype=np.float32).reshape(2, 3))
    _forged_torch_zip(path, offset=4, size=(2, 3), stride=(1000, 1), numel=8, record_bytes=32)
    with pytest.raises(CheckpointError, match="reaches past") as info:
        read_state_dict(path)
    assert path in str(info.value)
    _forged_torch_zip(path, offset=0, size=(8,), stride=(1,), numel=8, record_bytes=16)  # record shorter than numel
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)
