"""CPU inference through Paddle Inference: the model exported to a static graph, run by a oneDNN predictor.

On CPU the eager (dygraph) forward pays for every op separately: single-threaded elementwise kernels, strided
copies behind each transpose, a fresh allocation per intermediate. The exported program is optimised once
(fc / matmul / activation fusions, oneDNN kernels, constant-folded weight concatenations) and runs EVA-02 Ti/S
2-2.5x faster than the eager forward at batch 8 on a 2-core machine, on par with or ahead of timm on PyTorch
(see benchmarks/README.md). Logits agree with the eager forward to ~1e-9.

    import paddlemix_eva
    from paddlemix_eva.tasks.export import compile_for_cpu

    model = paddlemix_eva.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=224).eval()
    predictor = compile_for_cpu(model)
    logits = predictor(images)  # float32 numpy [B, 3, 224, 224] -> numpy [B, 1000]

The batch dimension of the exported graph is dynamic; the image size is fixed at export time.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.models.modeling_utils import EXPORT_MARKER
from paddlemix_eva.utils import compat
from paddlemix_eva.utils.logs import native_output_hidden
from paddlemix_eva.utils.runtime import keeps_eager_threads

logger = logging.getLogger(__name__)

__all__ = ["export_static", "CPUPredictor", "compile_for_cpu", "export_model", "load_exported", "ExportedModel",
           "cpu_has_bf16"]

#: what `export_model` writes next to the program: input size, dtype and provenance
EXPORT_META = EXPORT_MARKER  # the file that tells an export directory from a model directory
DTYPES = ("fp32", "bf16")


def _model_files(path_prefix: str) -> Tuple[str, str]:
    """(program file, params file) written by `paddle.jit.save`: PIR `.json`, or legacy `.pdmodel`."""
    for suffix in (".json", ".pdmodel"):
        if os.path.exists(path_prefix + suffix):
            return path_prefix + suffix, path_prefix + ".pdiparams"
    raise FileNotFoundError(f"no exported program at {path_prefix}(.json|.pdmodel); run export_static first")


def export_static(
    model: nn.Layer,
    path_prefix: str,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    input_name: str = "image",
) -> str:
    """Trace `model.forward(image)` to a static program and save it with its weights at `path_prefix`.

    `input_shape` defaults to [None, in_chans, image_size, image_size] from `model.config` (None = dynamic
    batch). The model is traced in eval mode (and put back into training mode afterwards if it was in it); the
    model object itself is not modified. Returns `path_prefix`.
    """
    if input_shape is None:
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "image_size"):
            raise ValueError("input_shape is required for a model without config.image_size")
        input_shape = [None, int(getattr(config, "in_chans", 3)), int(config.image_size), int(config.image_size)]
    was_training = model.training
    model.eval()
    try:
        spec = [paddle.static.InputSpec(list(input_shape), "float32", input_name)]
        with native_output_hidden():  # the PIR tracer's glog warnings
            paddle.jit.save(model, path_prefix, input_spec=spec)
    finally:
        if was_training:
            model.train()
    logger.info("exported %s with input %s to %s", type(model).__name__, list(input_shape), path_prefix)
    return path_prefix


class CPUPredictor:
    """A Paddle Inference predictor over an exported program: `predictor(images) -> first output` (numpy)."""

    def __init__(
        self,
        path_prefix: str,
        num_threads: Optional[int] = None,
        onednn: bool = True,
        ir_optim: bool = True,
        bf16: bool = False,
    ):
        """`num_threads` defaults to os.cpu_count(); `onednn=False` runs Paddle's plain CPU kernels (slower);
        `bf16=True` lets oneDNN run its bfloat16 kernels (AVX512-BF16 / AMX) with float32 inputs and outputs."""
        from paddle import inference

        num_threads = int(num_threads or os.cpu_count() or 1)
        program, params = _model_files(path_prefix)
        config = inference.Config(program, params)
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(num_threads)
        if bf16 and not (onednn and compat.onednn_compiled()):
            raise ValueError("bf16 inference runs on oneDNN kernels; this predictor has oneDNN disabled or missing")
        if onednn and compat.onednn_compiled():
            config.enable_onednn()
            if bf16:
                config.enable_onednn_bfloat16()
        else:
            if onednn:
                logger.warning("this Paddle build has no oneDNN; the predictor uses the plain CPU kernels")
            config.disable_onednn()  # Paddle 3.x enables oneDNN on CPU by default
        config.switch_ir_optim(ir_optim)
        config.disable_glog_info()
        self.num_threads = num_threads
        self.onednn = bool(config.onednn_enabled())
        self.bf16 = bool(bf16)
        self._first_run = True
        with native_output_hidden(), keeps_eager_threads():
            self._predictor = inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self._input.copy_from_cpu(np.ascontiguousarray(images, dtype=np.float32))
        with keeps_eager_threads():
            if self._first_run:  # oneDNN passes print diagnostics on the first run
                with native_output_hidden():
                    self._predictor.run()
                self._first_run = False
            else:
                self._predictor.run()
        return self._output.copy_to_cpu()

    def __repr__(self) -> str:
        return f"CPUPredictor(num_threads={self.num_threads}, onednn={self.onednn}, bf16={self.bf16})"


def compile_for_cpu(
    model: nn.Layer,
    num_threads: Optional[int] = None,
    onednn: bool = True,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    workdir: Optional[str] = None,
    bf16: bool = False,
) -> CPUPredictor:
    """Export `model` (see `export_static`) and load it into a `CPUPredictor`.

    The program is written to `workdir` when given (and kept there, e.g. to deploy it), else to a temporary
    directory removed once the predictor has loaded it. Later changes to the model's weights are not seen by
    the predictor: compile again after changing them.

    On CPUs with AVX-512 the exported attention is Paddle's fused `self_dp_attention` kernel, which needs
    AVX-512 at run time too; to deploy the program to other CPUs, export it with
    PADDLEMIX_EVA_DISABLE_CPU_FUSED_ATTENTION=1 (see `paddlemix_eva.layers.cpu_fused_attention_available`).
    """
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        prefix = export_static(model, os.path.join(workdir, "model"), input_shape)
        return CPUPredictor(prefix, num_threads=num_threads, onednn=onednn, bf16=bf16)
    with tempfile.TemporaryDirectory(prefix="paddlemix_eva_static_") as tmp:
        prefix = export_static(model, os.path.join(tmp, "model"), input_shape)
        return CPUPredictor(prefix, num_threads=num_threads, onednn=onednn, bf16=bf16)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 math natively (AVX512-BF16 or AMX), which the bf16 path needs to be fast."""
    return compat.cpu_has_fast_bf16()


def export_model(model: nn.Layer, out_dir: str, input_size: Optional[int] = None, dtype: str = "fp32") -> str:
    """Write a deployable classifier to `out_dir`: the static program and weights (`model.json` /
    `model.pdiparams`), the model's `config.json` (class names, preprocessing) and `export.json` (input size, dtype).

    `input_size` exports at another resolution (on a copy: pos_embed resampled, RoPE rebuilt; the caller's model
    is untouched). The batch dimension stays dynamic, the image size is fixed. `dtype="bf16"` records that the
    predictor runs oneDNN's bfloat16 kernels (the weights stay float32 in the files); it needs a CPU with
    AVX512-BF16 or AMX. Returns `out_dir`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype == "bf16" and not cpu_has_bf16():
        raise ValueError("--dtype bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); this one has none, "
                         "export with --dtype fp32")
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "image_size"):
        raise ValueError(f"{type(model).__name__} has no config.image_size; export_model needs a paddlemix-eva model")
    from paddlemix_eva.tasks.inference import check_classifier

    check_classifier(model)
    size = int(input_size or config.image_size)
    if size != int(config.image_size):
        import copy

        if not hasattr(model, "set_input_size"):
            raise ValueError(f"{type(model).__name__} cannot change its input size; export it at {config.image_size}")
        model = copy.deepcopy(model)
        model.set_input_size(size)
        config = model.config
    os.makedirs(out_dir, exist_ok=True)
    from paddlemix_eva.layers import cpu_fused_attention_available

    export_static(model, os.path.join(out_dir, "model"), [None, int(getattr(config, "in_chans", 3)), size, size])
    config.save_pretrained(out_dir)
    meta = {
        "input_size": size,
        "dtype": dtype,
        "batch": "dynamic",
        "model_class": type(model).__name__,
        "paddle_version": paddle.__version__,
        "cpu_fused_attention": bool(cpu_fused_attention_available()),
    }
    with open(os.path.join(out_dir, EXPORT_META), "w") as f:
        json.dump(meta, f, indent=2)
    logger.info("exported %s at %d px (%s) to %s", type(model).__name__, size, dtype, out_dir)
    return out_dir


class ExportedModel:
    """An `export_model` directory run by Paddle Inference: `exported(images) -> logits` for float32 NCHW numpy
    batches of the exported size; `.config` (dict) and `.image_size` tell how to preprocess."""

    def __init__(self, out_dir: str, num_threads: Optional[int] = None):
        meta_path = os.path.join(out_dir, EXPORT_META)
        if not os.path.isfile(meta_path):
            source = out_dir.rstrip("/")
            if os.path.isfile(os.path.join(out_dir, "config.json")):  # a model directory, not an export
                raise FileNotFoundError(
                    f"{out_dir} is a model directory, not an exported model (no {EXPORT_META}): predict it without "
                    f"--backend inference, or export it first: `paddlemix-eva export --model {source} --out "
                    f"{source}_export`, then use --model {source}_export --backend inference"
                )
            raise FileNotFoundError(
                f"{out_dir} is not an exported model (no {EXPORT_META}); create one with "
                f"`paddlemix-eva export --model NAME_OR_DIR --out {out_dir}`"
            )
        with open(meta_path) as f:
            self.meta = json.load(f)
        config_path = os.path.join(out_dir, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{config_path} is missing; export the model again")
        with open(config_path) as f:
            self.config = json.load(f)
        self.image_size = int(self.meta["input_size"])
        self.dtype = self.meta.get("dtype", "fp32")
        if self.dtype == "bf16" and not cpu_has_bf16():
            raise ValueError(f"{out_dir} was exported for bf16, which this CPU cannot run fast (no AVX512-BF16 / "
                             "AMX); export it again with --dtype fp32")
        self.predictor = CPUPredictor(os.path.join(out_dir, "model"), num_threads=num_threads,
                                      bf16=self.dtype == "bf16")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        size = self.image_size
        if images.ndim != 4 or images.shape[2:] != (size, size):
            got = f"{images.shape[-1]} px images" if images.ndim == 4 else f"an array of shape {list(images.shape)}"
            raise ValueError(
                f"this model was exported for {size} px images (a [B, 3, {size}, {size}] batch); got {got}. "
                f"Export it again with --input-size {images.shape[-1] if images.ndim == 4 else 'SIZE'}"
            )
        return self.predictor(images)

    def __repr__(self) -> str:
        return f"ExportedModel({self.meta.get('model_class')}, {self.image_size} px, {self.dtype}, {self.predictor})"


def load_exported(out_dir: str, num_threads: Optional[int] = None) -> ExportedModel:
    """The model `export_model` wrote to `out_dir`, ready to run (see `ExportedModel`)."""
    return ExportedModel(out_dir, num_threads=num_threads)
