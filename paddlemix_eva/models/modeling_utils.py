"""PaddleNLP `PretrainedModel` with the loading rules of paddlemix-eva.

`from_pretrained(name_or_dir)` accepts a zoo name (config shipped in the package, weights fetched from the
community store and cached) or a local directory (`config.json` + `model_state.pdparams` / `model.safetensors`).
Before weights reach PaddleNLP's loader every key is checked: RoPE buffers are dropped, keys of a task head the
checkpoint lacks are reported, foreign layouts and shape mismatches are refused with the keys and shapes.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from paddlenlp.transformers import PretrainedModel

from paddlemix_eva.models.configuration_utils import ImageClassifierConfig, without_stale_class_names
from paddlemix_eva.utils import compat
from paddlemix_eva.utils.checkpoint import CheckpointError, read_state_dict
from paddlemix_eva.utils.logs import quiet_paddlenlp

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model_state.pdparams", "model.safetensors")
#: official checkpoints persist RoPE tables; ours are rebuilt for the input grid
_ROPE_KEY = re.compile(r"(^|\.)rope\.")
#: key fragments that only appear in official / timm / open_clip layouts
_FOREIGN_LAYOUT = ("attn.qkv.", "attn.q_bias", "attn.v_bias", "mlp.w12.", "mlp.fc1_g.", "mlp.fc1_x.", "visual.trunk.")


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    """A few keys by name; many keys as their two-level prefixes with counts (`teacher.text.* (196)`)."""
    if len(keys) <= limit:
        return ", ".join(keys)
    groups: Dict[str, int] = {}
    for key in keys:
        prefix = ".".join(key.split(".")[:2])
        groups[prefix] = groups.get(prefix, 0) + 1
    return ", ".join(f"{prefix}.* ({count})" if count > 1 else prefix for prefix, count in groups.items())


def weight_file_in(directory: str):
    """The weight file of a model directory, or None when it holds only a config."""
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


#: written by `inference_backend.export_model` next to a static program
EXPORT_MARKER = "export.json"


def find_weight_file(directory: str) -> str:
    path = weight_file_in(directory)
    if path:
        return path
    if os.path.isfile(os.path.join(directory, EXPORT_MARKER)):
        raise FileNotFoundError(
            f"{directory} is an exported model (a Paddle Inference program, not a model directory): predict with "
            "`--backend inference` (in Python: `paddlemix_eva.inference_backend.load_exported(dir)`)"
        )
    raise FileNotFoundError(
        f"no weights in {directory}: expected one of {list(WEIGHT_FILES)}. Checkpoints in official / timm / "
        "open_clip layouts can be converted with `paddlemix-eva convert`."
    )


class EVAPretrainedModel(PretrainedModel):
    """Base of every paddlemix-eva model."""

    resource_files_names = {"model_state": "model_state.pdparams"}
    #: regexes of parameter keys a checkpoint may lack (a task head initialised afresh)
    _optional_checkpoint_keys: Sequence[str] = ()
    #: regexes of checkpoint keys this model drops on purpose (e.g. MIM-only keys in a classifier)
    _dropped_checkpoint_keys: Sequence[str] = ()
    #: True for image classifiers (logits from `forward(image)` over `config.num_classes` labels): the models that
    #: prediction, evaluation and export accept
    is_classifier: bool = False
    #: the `model_type` of the classifier that fine-tuning makes of this (pre-training) model, if any
    finetunes_into: Optional[str] = None

    def __init__(self, config, *args, **kwargs):
        from paddlemix_eva.utils.runtime import use_all_cores_by_default

        use_all_cores_by_default()
        if isinstance(config, ImageClassifierConfig):
            config.label_names()  # class names that do not fit the head fail here, not at the first prediction
        super().__init__(config, *args, **kwargs)

    # ------------------------------------------------------------------------------------- init
    def init_weights(self) -> None:
        """Upstream initialisation; skipped under PaddleNLP's `no_init_weights` (weights come next anyway)."""
        if compat.init_weights_enabled():
            self._init_parameters()

    def _init_parameters(self) -> None:
        raise NotImplementedError

    #: False for models whose blocks do not all cost the same (token pruning): MACs are then counted on the
    #: full model instead of being extrapolated from one- and two-block builds
    macs_linear_in_depth: bool = True

    @classmethod
    def config_with_depth(cls, fields: Dict[str, Any], depth: int) -> Tuple[Dict[str, Any], int]:
        """(config fields whose image encoder has `depth` blocks, its original depth): how the MAC counter builds
        a one- and a two-block model to extrapolate from. Families with nested configs override it."""
        if "layers" not in fields:
            raise ValueError(f"{cls.__name__}: the config names no encoder depth (`layers`)")
        return {**fields, "layers": depth}, int(fields["layers"])

    @classmethod
    def image_encoder(cls, config) -> Tuple[Any, Callable]:
        """(layer, forward) that encode one image batch: `forward(image)`. What the FLOP counter of the zoo runs;
        families whose image path is part of a bigger model (CLIP's vision tower) return only that part."""
        model = cls(config)
        return model, model

    def layer_ids(self) -> Dict[str, int]:
        """Parameter name -> depth (0 = input side) for layer-wise LR decay; models built from the ViT trunk
        answer it from their module tree. Others have no layer order to decay along."""
        raise NotImplementedError(f"{type(self).__name__} has no layer-wise learning-rate decay (use layer_decay 1)")

    # ------------------------------------------------------------------------------- resolving
    @classmethod
    def resolve_pretrained(cls, name_or_path: str, force_download: bool = False):
        """(model directory, weight file, zoo entry or None) for a zoo name or a local directory."""
        from paddlemix_eva import zoo
        from paddlemix_eva.utils import hub

        if os.path.isdir(name_or_path):
            return name_or_path, find_weight_file(name_or_path), None
        entry = zoo.find_entry(name_or_path)
        if entry is None:
            if os.path.sep in name_or_path or name_or_path.startswith("."):
                raise FileNotFoundError(f"model directory not found: {name_or_path}")
            zoo.get_entry(name_or_path)  # raises with close matches
        weights = hub.fetch_weights(entry.full_name, force_download=force_download)
        return os.path.dirname(weights), weights, entry

    # --------------------------------------------------------------------------------- loading
    @classmethod
    def adapt_state_dict(cls, state_dict: Dict[str, np.ndarray], config, source: str) -> Dict[str, np.ndarray]:
        """Hook for family-specific fixes of a checkpoint before it is checked (e.g. pos_embed resampling)."""
        return {k: v for k, v in state_dict.items() if not _ROPE_KEY.search(k)}

    @classmethod
    def check_state_dict(
        cls, state_dict: Dict[str, np.ndarray], expected: Dict[str, Sequence[int]], source: str, strict: bool = True,
        new_head: bool = False,
    ) -> Dict[str, np.ndarray]:
        """Compare keys and shapes with the model; raise with the offending keys, log what is dropped or missing.
        `new_head` (the caller asked for another `num_classes`): head keys of another shape are initialised afresh."""
        foreign = sorted(k for k in state_dict if any(f in k for f in _FOREIGN_LAYOUT))
        if foreign and not any(k in expected for k in foreign):
            raise CheckpointError(
                f"{source} is in an official / timm / open_clip layout (keys such as {foreign[:3]}); convert it "
                "first: `paddlemix-eva convert SRC --format official|timm|open_clip --out DIR`"
            )
        reshaped = [k for k, v in state_dict.items() if k in expected and list(v.shape) != list(expected[k])]
        renewed = [k for k in reshaped if new_head and _matches(k, cls._optional_checkpoint_keys)]
        if renewed:
            logger.warning("%s: %s have other shapes than this model's (%s): a new label set, initialised afresh",
                           source, describe_keys(renewed), ", ".join(
                               f"{list(state_dict[k].shape)} -> {list(expected[k])}" for k in renewed[:2]))
            state_dict = {k: v for k, v in state_dict.items() if k not in renewed}
        mismatched = [
            f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(expected[k])}"
            for k in reshaped if k not in renewed
        ]
        if mismatched:
            raise CheckpointError(
                f"{source} does not fit {cls.__name__} with this config ({len(mismatched)} shape mismatches; is it a "
                "checkpoint of another model size?):\n  " + "\n  ".join(mismatched[:20])
            )
        dropped = sorted(k for k in state_dict if k not in expected and _matches(k, cls._dropped_checkpoint_keys))
        if dropped:
            logger.info("%s: dropping %d keys %s does not use: %s", source, len(dropped), cls.__name__,
                        describe_keys(dropped))
        unexpected = sorted(k for k in state_dict if k not in expected and k not in dropped)
        missing = sorted(k for k in expected if k not in state_dict)
        fresh = [k for k in missing if _matches(k, cls._optional_checkpoint_keys)]
        required = [k for k in missing if k not in fresh]
        if fresh:
            logger.warning("%s has no %s: initialised afresh (train them before use)", source, fresh)
        problems = []
        if required:
            problems.append(f"missing keys {required[:20]}{' ...' if len(required) > 20 else ''}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
        if problems:
            message = f"{source} does not match {cls.__name__}: " + "; ".join(problems)
            if strict:
                raise CheckpointError(message + " (pass strict=False to load anyway)")
            logger.warning(message)
        return {k: v for k, v in state_dict.items() if k in expected}

    def load_weights(self, name_or_path: str, strict: bool = True) -> None:
        """Load weights into this built model from a weight file, a model directory or a zoo name, with the same
        key and shape checks (and pos_embed resampling) as `from_pretrained`."""
        import paddle

        path = name_or_path if os.path.isfile(name_or_path) else type(self).resolve_pretrained(name_or_path)[1]
        state = type(self).adapt_state_dict(read_state_dict(path), self.config, path)
        expected = {k: list(v.shape) for k, v in self.state_dict().items()}
        state = type(self).check_state_dict(state, expected, path, strict=strict)
        self.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
        logger.info("%s weights loaded from %s", type(self).__name__, path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *args, **kwargs):
        """Load a zoo model by name or a saved model directory.

        Extra keyword arguments override config fields (`image_size=448` interpolates pos_embed, with a warning;
        `num_classes=10` gives a fresh head). `strict=False` downgrades missing / unexpected keys to a warning.
        """

        strict = kwargs.pop("strict", True)
        force_download = kwargs.pop("force_download", False)
        config = kwargs.pop("config", None)
        name = str(pretrained_model_name_or_path)
        model_dir, weights, entry = cls.resolve_pretrained(name, force_download=force_download)
        config_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in _PADDLENLP_LOAD_KWARGS}
        if config is None:
            if entry is not None:
                config = entry.build_config(cls.config_class, **config_overrides)
            else:
                config = config_with_overrides(cls.config_class, model_dir, config_overrides)
        elif config_overrides:
            raise TypeError(f"pass either config= or config overrides, not both: {sorted(config_overrides)}")
        state_dict = read_state_dict(weights)
        state_dict = cls.adapt_state_dict(state_dict, config, weights)
        expected = cls._expected_shapes(config)
        state_dict = cls.check_state_dict(state_dict, expected, weights, strict=strict,
                                          new_head="num_classes" in config_overrides)
        with quiet_paddlenlp():  # its report of this load repeats what check_state_dict said
            model = super().from_pretrained(model_dir, *args, config=config, state_dict=state_dict, **kwargs)
        logger.info("%s loaded from %s", cls.__name__, weights)
        return model

    @classmethod
    def build_lazily(cls, config) -> "EVAPretrainedModel":
        """A model whose parameters have shapes but no storage or initialisation (cheap even for L)."""
        import paddle

        with compat.no_init_weights(), paddle.LazyGuard():
            return cls(config)

    @classmethod
    def _get_tensor_parallel_mappings(cls, config, is_split: bool = True):
        """PaddleNLP's hook for splitting / merging tensor-parallel checkpoints: every sharded Linear is split by
        output columns (see `paddlemix_eva.tensor_parallel`)."""
        from paddlemix_eva.layers.tensor_parallel import tensor_parallel_mappings

        degree = max(1, getattr(config, "tensor_parallel_degree", 1))
        rank = max(0, getattr(config, "tensor_parallel_rank", 0))
        return tensor_parallel_mappings(cls.build_lazily(config), degree, rank, is_split)

    @classmethod
    def _expected_shapes(cls, config) -> Dict[str, List[int]]:
        return {k: list(v.shape) for k, v in cls.build_lazily(config).state_dict().items()}


def config_fields(config_class) -> set:
    """The fields a config class takes as arguments (its own and its bases')."""
    fields = set()
    for klass in config_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            fields.update(p for p in inspect.signature(init).parameters if p not in ("self", "kwargs", "args"))
    return fields


def config_with_overrides(config_class, model_dir: str, overrides: Dict[str, Any]):
    """The directory's config with `overrides` applied before construction, so the config's own checks see them
    (PaddleNLP sets overrides on the built config, which would skip e.g. the patch-grid check); an override that
    is no field of the config (a typo) is refused."""
    config_dict, _ = config_class.get_config_dict(model_dir)
    unknown = sorted(k for k in overrides if k not in config_dict and k not in config_fields(config_class))
    if unknown:
        raise TypeError(f"{config_class.__name__} has no field {unknown}; "
                        f"fields: {sorted(config_fields(config_class))}")
    return config_class.from_dict(without_stale_class_names(config_dict, overrides))


def count_parameters(model) -> int:
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


_PADDLENLP_LOAD_KWARGS = {
    "dtype",
    "low_cpu_mem_usage",
    "ignore_mismatched_sizes",
    "cache_dir",
    "subfolder",
    "variant",
    "use_safetensors",
    "convert_from_torch",
    "from_hf_hub",
    "from_aistudio",
}


class ConvertedWeightsMixin:
    """`resolve_pretrained` for zoo entries whose weights exist only as PyTorch files (`zoo.WEIGHTS_SOURCE`): the
    name resolves to the file `paddlemix-eva convert` left in the weight cache, or to an error that says how to
    make it. Put it before `EVAPretrainedModel` in the bases."""

    @classmethod
    def resolve_pretrained(cls, name_or_path: str, force_download: bool = False):
        from paddlemix_eva import zoo
        from paddlemix_eva.utils import hub

        entry = None if os.path.isdir(name_or_path) else zoo.find_entry(name_or_path)
        if entry is None or zoo.WEIGHTS_SOURCE not in entry.extra:
            return super().resolve_pretrained(name_or_path, force_download=force_download)
        weights = os.path.join(hub.cached_model_dir(entry.full_name), hub.WEIGHTS_NAME)
        if os.path.isfile(weights):
            return os.path.dirname(weights), weights, entry
        source = entry.extra[zoo.WEIGHTS_SOURCE]
        if not source:
            raise FileNotFoundError(f"{entry.full_name} is an architecture without released weights; "
                                    f"{cls.how_to_train(entry)}")
        fmt = "timm" if "timm" in source else "official"
        file = source if source.endswith((".pth", ".pt", ".bin", ".safetensors")) else "FILE"
        raise FileNotFoundError(
            f"{entry.full_name} has no published Paddle weights (source: {source}). Convert the PyTorch file: "
            f"`paddlemix-eva convert {file} --format {fmt} --model {entry.name} --out DIR` and load DIR "
            f"(or copy DIR/model_state.pdparams to {weights})"
        )

    @classmethod
    def how_to_train(cls, entry) -> str:
        return "train it with the family's example script"
