"""Configurations of EVA-CLIP: vision tower, text tower and the joint model.

Field names and defaults are PaddleMIX's (`EVAVisionTransformerConfig`, `TextTransformerConfig`,
`EVACLIPConfig` with `vision_cfg` / `text_cfg` dicts), so PaddleMIX's `config.json` files load unchanged; the named
models of `zoo_table.py` set every architectural field explicitly.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Union

from paddlenlp.transformers import PretrainedConfig

from paddlemix_eva.data.transforms import Preprocessing
from paddlemix_eva.models.configuration_utils import CheckedConfig, ImageConfig
from paddlemix_eva.models.trunk import PatchGrid, TrunkSpec, check_patch_grid

logger = logging.getLogger(__name__)

# PaddleMIX options that no released EVA-CLIP uses; refused when switched on rather than silently ignored.
_UNSUPPORTED_VISION = ("use_rel_pos_bias", "use_shared_rel_pos_bias", "attentional_pool", "fuse_qv", "init_values")
_UNSUPPORTED_TEXT = ("embed_cls", "ls_init_value")


def _refuse(config: PretrainedConfig, flags) -> None:
    for flag in flags:
        if getattr(config, flag, None):
            raise NotImplementedError(
                f"{type(config).__name__}: `{flag}={getattr(config, flag)!r}` is a PaddleMIX option no released "
                "EVA-CLIP uses and paddlemix-eva does not implement; remove it from the config"
            )


class EVACLIPVisionConfig(PatchGrid, ImageConfig):
    """EVA-CLIP image tower: EVA-02 style (RoPE, SwiGLU + sub-LN, `inner_attn_ln`) or EVA-01 style (GELU MLP).
    Preprocessing defaults to CLIP's (mean / std, resize the shorter side and centre-crop, bicubic)."""

    model_type = "evavision_transformer"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1000,
        width: int = 768,
        layers: int = 12,
        head_width: int = 64,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path_rate: float = 0.0,
        patch_dropout: float = 0.0,
        use_abs_pos_emb: bool = True,
        rope: bool = False,
        use_mean_pooling: bool = False,
        postnorm: bool = False,
        pt_hw_seq_len: int = 16,
        intp_freq: bool = False,
        naiveswiglu: bool = False,
        subln: bool = False,
        inner_attn_ln: bool = True,
        init_scale: float = 0.001,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.width = width
        self.layers = layers
        self.head_width = head_width
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.drop_path_rate = drop_path_rate
        self.patch_dropout = patch_dropout
        self.use_abs_pos_emb = use_abs_pos_emb
        self.rope = rope
        self.use_mean_pooling = use_mean_pooling
        self.postnorm = postnorm
        self.pt_hw_seq_len = pt_hw_seq_len
        self.intp_freq = intp_freq
        self.naiveswiglu = naiveswiglu
        self.subln = subln
        self.inner_attn_ln = inner_attn_ln
        self.init_scale = init_scale
        _refuse(self, _UNSUPPORTED_VISION)
        if use_mean_pooling:
            raise NotImplementedError(
                "EVACLIPVisionConfig: every released EVA-CLIP pools the cls token after the final norm; "
                "use_mean_pooling=True (PaddleMIX's default, which would also break the MIM teacher) is not supported"
            )
        if width % head_width:
            raise ValueError(f"width {width} is not divisible by head_width {head_width}")
        self.validate()

    def validate(self) -> None:
        check_patch_grid(self.image_size, self.patch_size)
        if not 0.0 <= float(self.patch_dropout or 0.0) < 1.0:
            raise ValueError(f"EVACLIPVisionConfig: patch_dropout must be in [0, 1), got {self.patch_dropout}")

    @property
    def num_heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.width * self.mlp_ratio)

    def trunk_spec(self) -> TrunkSpec:
        return TrunkSpec(
            image_size=self.image_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            dim=self.width,
            depth=self.layers,
            num_heads=self.num_heads,
            head_dim=self.head_width,
            mlp_hidden_dim=self.mlp_hidden_dim,
            qkv_bias=self.qkv_bias,
            swiglu=self.naiveswiglu,
            ffn_ln=self.subln,
            inner_attn_ln=self.subln and self.inner_attn_ln,
            postnorm=self.postnorm,
            rope=self.rope,
            rope_pt_seq_len=self.pt_hw_seq_len if self.intp_freq else None,
            use_abs_pos_emb=self.use_abs_pos_emb,
            drop_path_rate=self.drop_path_rate,
            patch_dropout=float(self.patch_dropout or 0.0),  # FLIP: dropped in training only
        )


class EVACLIPTextConfig(CheckedConfig):
    """OpenAI-CLIP style causal text transformer: EOT pooling, `text_projection`, LayerNorm eps 1e-5."""

    model_type = "text_transformer"
    attribute_map = {}

    def __init__(
        self,
        context_length: int = 77,
        vocab_size: int = 49408,
        width: int = 512,
        heads: int = 8,
        layers: int = 12,
        mlp_ratio: float = 4.0,
        embed_dim: int = 512,
        quick_gelu: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.width = width
        self.heads = heads
        self.layers = layers
        self.mlp_ratio = mlp_ratio
        self.embed_dim = embed_dim
        self.quick_gelu = quick_gelu
        _refuse(self, _UNSUPPORTED_TEXT)
        if quick_gelu:
            raise NotImplementedError("EVACLIPTextConfig: quick_gelu is not used by any EVA-CLIP and not implemented")
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by heads {heads}")


def _as_dict(cfg: Union[None, Dict[str, Any], PretrainedConfig]) -> Dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, PretrainedConfig):
        return {k: v for k, v in cfg.to_diff_dict().items() if k not in ("model_type", "architectures",
                                                                         "paddlenlp_version", "dtype")}
    return dict(cfg)


#: the joint embedding width when neither the config nor its towers name one
DEFAULT_EMBED_DIM = 512


def joint_embed_dim(embed_dim: Optional[int], vision: Dict[str, Any], text: Dict[str, Any]) -> int:
    """The shared embedding width: the top-level value when given (it overrides the towers, as in PaddleMIX), else
    the towers' own `embed_dim` (PaddleMIX writes it only there), which must then agree."""
    if embed_dim is not None:
        return int(embed_dim)
    named = {tower: int(cfg["embed_dim"]) for tower, cfg in (("vision", vision), ("text", text)) if "embed_dim" in cfg}
    if len(set(named.values())) > 1:
        raise ValueError(
            f"EVACLIPConfig: the towers disagree on embed_dim ({named}) and no top-level embed_dim is given; image "
            "and text features must share one width: set `embed_dim` at the top of the config"
        )
    return next(iter(named.values()), DEFAULT_EMBED_DIM)


class EVACLIPConfig(CheckedConfig):
    """Joint image-text model; `embed_dim` (the shared embedding width) is copied into both towers.

    Reads `config.json` as PaddleMIX writes it: the towers under `vision_cfg` / `text_cfg` and again under
    `vision_config` / `text_config` (PaddleMIX's `to_dict` emits both; `*_cfg` wins, as in PaddleMIX), with
    `embed_dim` inside the tower dicts and no top-level `embed_dim`. PaddleMIX's `fusedlinear` / `flash_attn`
    switches pick kernels, not numbers; they are kept as plain fields.

    The towers' configs are held as objects (`vision_config`, `text_config`), the ones the towers are built
    with: a change to a tower (e.g. `set_input_size`) is what the joint config saves. `vision_cfg` / `text_cfg`
    are their dicts, written to config.json under both of PaddleMIX's names.
    """

    model_type = "evaclip"
    attribute_map = {}
    nested_configs = {"vision_cfg": EVACLIPVisionConfig, "vision_config": EVACLIPVisionConfig,
                      "text_cfg": EVACLIPTextConfig, "text_config": EVACLIPTextConfig}

    def __init__(
        self,
        embed_dim: Optional[int] = None,
        vision_cfg: Optional[Dict[str, Any]] = None,
        text_cfg: Optional[Dict[str, Any]] = None,
        **kwargs,
    ):
        vision = _tower_dict("vision", vision_cfg, kwargs.pop("vision_config", None))
        text = _tower_dict("text", text_cfg, kwargs.pop("text_config", None))
        super().__init__(**kwargs)
        self.embed_dim = joint_embed_dim(embed_dim, vision, text)
        # parsed now, so a bad config fails at construction, not at first use
        self.vision_config = EVACLIPVisionConfig(**{**vision, "embed_dim": self.embed_dim})
        self.text_config = EVACLIPTextConfig(**{**text, "embed_dim": self.embed_dim})

    @property
    def vision_cfg(self) -> Dict[str, Any]:
        return _as_dict(self.vision_config)

    @property
    def text_cfg(self) -> Dict[str, Any]:
        return _as_dict(self.text_config)

    @property
    def image_size(self) -> int:
        return self.vision_config.image_size

    @property
    def preprocessing(self) -> Preprocessing:
        return self.vision_config.preprocessing

    def to_dict(self) -> Dict[str, Any]:
        output = super().to_dict()
        for tower in ("vision", "text"):
            output.pop(f"{tower}_config")
            output[f"{tower}_cfg"] = getattr(self, f"{tower}_cfg")
            output[f"{tower}_config"] = getattr(self, f"{tower}_cfg")
        return output


def _tower_dict(tower: str, cfg, alias) -> Dict[str, Any]:
    """A tower's fields from `<tower>_cfg`, else from PaddleMIX's duplicate `<tower>_config`."""
    for value in (cfg, alias):
        if isinstance(value, str):
            raise ValueError(
                f"EVACLIPConfig: {tower}_cfg is the model name {value!r}; paddlemix-eva builds towers from their "
                f"fields: put that model's {tower} config dict there (or load the joint model by name)"
            )
    chosen = _as_dict(cfg if cfg is not None else alias)
    if cfg is not None and alias is not None and _as_dict(alias) != chosen:
        logger.warning("EVACLIPConfig: %s_cfg and %s_config differ; using %s_cfg (as PaddleMIX does)", tower, tower,
                       tower)
    return chosen
