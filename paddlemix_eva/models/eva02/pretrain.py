"""EVA-02 masked image modeling: a frozen EVA-CLIP teacher and an EVA-02 MIM student.

The student sees the image with block-masked patches replaced by `mask_token` and predicts, at the masked
positions, the teacher's per-patch features (`head(norm(x))` of every patch token). Loss: negative mean cosine
similarity over the masked tokens, in float32. Keys carry the `teacher.` / `student.` prefixes of PaddleMIX.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Union

import paddle
import paddle.nn as nn

from paddlemix_eva.layers.losses import negative_cosine_loss
from paddlemix_eva.models.configuration_utils import CheckedConfig
from paddlemix_eva.models.eva02.configuration import EVA02VisionTransformerForMIMConfig
from paddlemix_eva.models.eva02.modeling import EVA02VisionTransformerForMIM
from paddlemix_eva.models.evaclip import EVACLIP, EVACLIPConfig, EVACLIPVisionTransformer
from paddlemix_eva.models.modeling_utils import EVAPretrainedModel, weight_file_in
from paddlemix_eva.utils.checkpoint import read_state_dict

logger = logging.getLogger(__name__)
ModelRef = Union[str, Dict[str, Any]]


class EVA02ForPretrainConfig(CheckedConfig):
    """`teacher_config` / `student_config`: a zoo name or directory (built and loaded with its weights), or a dict
    of config fields (built with upstream init). A dict student gets `predict_feature_dim` from the teacher."""

    model_type = "eva02_for_pretrain"
    attribute_map = {}
    nested_configs = {"teacher_config": EVACLIPConfig, "student_config": EVA02VisionTransformerForMIMConfig}

    def __init__(
        self,
        teacher_config: ModelRef = "paddlemix/EVA/EVA01-CLIP-g-14",
        student_config: Optional[ModelRef] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.teacher_config = teacher_config
        self.student_config = student_config if student_config is not None else {}

    @property
    def preprocessing(self):
        """The student's: what the pre-training images are normalised with (the teacher gets its own)."""
        student = self.student_config
        config = EVA02VisionTransformerForMIMConfig(**student) if isinstance(student, dict) else _mim_config(student)
        return config.preprocessing


class MIMTeacher(nn.Layer):
    """The frozen image tower of an EVA-CLIP (`visual`), returning per-patch features [B, N, embed_dim]."""

    def __init__(self, clip_config: EVACLIPConfig):
        super().__init__()
        self.clip_config = clip_config
        self.visual = EVACLIPVisionTransformer(clip_config.vision_config)

    @property
    def embed_dim(self) -> int:
        return self.clip_config.embed_dim

    @property
    def grid_size(self) -> int:
        return self.visual.config.grid_size

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.visual.forward_tokens(image)

    def load_weights(self, name_or_path: str) -> None:
        """Load the image tower from an EVA-CLIP checkpoint (zoo name, directory or weight file); the text tower's
        weights in it are ignored. Keys and shapes are checked like any `from_pretrained`."""
        path = name_or_path if os.path.isfile(name_or_path) else EVACLIP.resolve_pretrained(name_or_path)[1]
        state = {k: v for k, v in read_state_dict(path).items() if k.startswith("visual.")}
        state = EVACLIP.adapt_state_dict(state, self.clip_config, path)
        expected = {f"visual.{k}": list(v.shape) for k, v in self.visual.state_dict().items()}
        state = EVACLIP.check_state_dict(state, expected, path, strict=True)
        self.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
        logger.info("teacher weights loaded from %s", path)


def _mim_config(ref: str) -> EVA02VisionTransformerForMIMConfig:
    from paddlemix_eva import zoo

    if os.path.isdir(ref):
        return EVA02VisionTransformerForMIMConfig.from_pretrained(ref)
    return zoo.build_config(zoo.get_entry(ref), EVA02VisionTransformerForMIMConfig)


def _clip_config(ref: ModelRef) -> EVACLIPConfig:
    from paddlemix_eva import zoo

    if isinstance(ref, dict):
        return EVACLIPConfig(**ref)
    if os.path.isdir(ref):
        return EVACLIPConfig.from_pretrained(ref)
    return zoo.build_config(zoo.get_entry(ref), EVACLIPConfig)


class EVA02ForPretrain(EVAPretrainedModel):
    """Teacher + student for EVA-02 MIM pre-training; `forward(samples, image, bool_masked_pos)` -> loss dict."""

    config_class = EVA02ForPretrainConfig
    finetunes_into = "eva02_vit_finetune"
    base_model_prefix = "eva02_for_pretrain"
    #: a PaddleMIX composite checkpoint holds the whole EVA-CLIP teacher; only its image tower is used
    _dropped_checkpoint_keys = (r"^teacher\.text\.", r"^teacher\.logit_scale$")

    def __init__(self, config: EVA02ForPretrainConfig):
        """Builds both parts (upstream init); `load_named_weights` then loads the parts given by name."""
        super().__init__(config)
        self.teacher = MIMTeacher(_clip_config(config.teacher_config))
        for param in self.teacher.parameters():
            param.stop_gradient = True
        self.teacher.eval()
        if isinstance(config.student_config, str):
            student_config = _mim_config(config.student_config)
        else:
            student_config = EVA02VisionTransformerForMIMConfig(
                **{**config.student_config, "predict_feature_dim": self.teacher.embed_dim}
            )
        self.student = EVA02VisionTransformerForMIM(student_config)
        self.check_compatible()
        self.save_student_only = True

    @classmethod
    def config_with_depth(cls, fields, depth: int):
        """The student's depth (the teacher's cost is its own zoo entry's)."""
        student = dict(fields["student_config"])
        return {**fields, "student_config": {**student, "layers": depth}}, int(student["layers"])

    @classmethod
    def image_encoder(cls, config: EVA02ForPretrainConfig):
        """The student alone, with every patch predicted (the teacher's cost is its own zoo entry's)."""
        if isinstance(config.student_config, str):
            student_config = _mim_config(config.student_config)
        else:
            teacher_dim = _clip_config(config.teacher_config).embed_dim
            student_config = EVA02VisionTransformerForMIMConfig(
                **{"predict_feature_dim": teacher_dim, **config.student_config}
            )
        return EVA02VisionTransformerForMIM.image_encoder(student_config)

    def load_named_weights(self, checkpoint_dir: Optional[str] = None) -> None:
        """Load the weights of the parts the config names (a dict part keeps its fresh initialisation). A composite
        checkpoint in `checkpoint_dir` (PaddleMIX's `model_state.pdparams` with `teacher.*` / `student.*` keys)
        supplies the parts it holds instead of their names."""
        weights = weight_file_in(checkpoint_dir) if checkpoint_dir else None
        loaded = self.load_checkpoint_parts(weights) if weights else set()
        if "teacher" not in loaded and isinstance(self.config.teacher_config, str):
            self.teacher.load_weights(self.config.teacher_config)
        if "student" not in loaded and isinstance(self.config.student_config, str):
            self.student.load_weights(self.config.student_config)

    def load_checkpoint_parts(self, path: str) -> set:
        """Load a composite (or student-only) weight file; returns the parts it held ({'teacher', 'student'}).
        The teacher's text tower and logit scale in PaddleMIX's checkpoints are reported as dropped."""
        state = self.adapt_state_dict(read_state_dict(path), self.config, path)
        if not any(k.startswith(("teacher.", "student.")) for k in state):
            state = {f"student.{k}": v for k, v in state.items()}
        parts = {part for part in ("teacher", "student") if any(k.startswith(part + ".") for k in state)}
        expected = {k: list(v.shape) for k, v in self.state_dict().items() if k.split(".", 1)[0] in parts}
        state = self.check_state_dict(state, expected, path, strict=True)
        self.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
        logger.info("%s loaded from %s", " and ".join(sorted(parts)), path)
        return parts

    def check_compatible(self) -> None:
        student, teacher = self.student.config, self.teacher
        if student.grid_size != teacher.grid_size:
            raise ValueError(
                f"teacher and student patch grids differ: the teacher sees {teacher.visual.config.image_size} px in "
                f"patches of {teacher.visual.config.patch_size} ({teacher.grid_size}x{teacher.grid_size}), the student "
                f"{student.image_size} px in patches of {student.patch_size} "
                f"({student.grid_size}x{student.grid_size}); "
                "the mask must address the same patches in both"
            )
        if student.predict_feature_dim != teacher.embed_dim:
            raise ValueError(
                f"student lm_head predicts {student.predict_feature_dim}-d features, "
                f"the teacher gives {teacher.embed_dim}"
            )

    def train(self):
        """Training mode for the student only: the teacher stays in eval mode (no dropout / drop path)."""
        super().train()
        self.teacher.eval()
        return self

    def no_weight_decay(self):
        return [f"student.{name}" for name in self.student.no_weight_decay()]

    @property
    def enable_recompute(self) -> bool:
        return self.student.enable_recompute

    @enable_recompute.setter
    def enable_recompute(self, value: bool) -> None:
        self.student.enable_recompute = value

    def forward(
        self, samples: paddle.Tensor, image: paddle.Tensor, bool_masked_pos: paddle.Tensor
    ) -> Dict[str, paddle.Tensor]:
        """`samples`: student view, `image`: teacher view, `bool_masked_pos`: [B, H, W] mask of the student's grid.
        Returns the loss (mean over this batch's masked tokens), the predictions and the targets [M, D]."""
        mask = bool_masked_pos.reshape([bool_masked_pos.shape[0], -1]).astype("bool")
        with paddle.no_grad():
            target = self.teacher(image)[mask]
        pred = self.student(samples, mask)
        return {"loss": negative_cosine_loss(pred, target), "pred": pred, "target": target}

    # ------------------------------------------------------------------------- saving / loading
    def save_pretrained(self, save_dir: str, *args, **kwargs):
        """The student alone by default (a directory `EVA02VisionTransformer.from_pretrained` fine-tunes from);
        with `save_student_only = False` the whole composite."""
        if self.save_student_only:
            return self.student.save_pretrained(save_dir, *args, **kwargs)
        return super().save_pretrained(save_dir, *args, **kwargs)

    def set_state_dict(self, state_dict, *args, **kwargs):
        """Accepts composite state dicts and student-only ones (what `save_pretrained` writes by default), so a run
        resumes from its own checkpoints."""
        if state_dict and not any(k.startswith(("student.", "teacher.")) for k in state_dict):
            return self.student.set_state_dict(state_dict, *args, **kwargs)
        return super().set_state_dict(state_dict, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *args, **kwargs):
        """A composite zoo name or directory: build teacher and student as the config says; the directory's
        composite weights (if any) load first, named parts without weights there download theirs. Keyword
        arguments override config fields."""
        from paddlemix_eva import zoo

        name = str(pretrained_model_name_or_path)
        if os.path.isdir(name):
            config = cls.config_class.from_pretrained(name, **kwargs)
        else:
            config = zoo.build_config(zoo.get_entry(name), cls.config_class, **kwargs)
        model = cls(config)
        model.load_named_weights(name if os.path.isdir(name) else None)
        return model
