"""RegNetY, the teacher of the Evo-LeViT (and DeiT) distillation recipe: timm's `regnety_160` by default.

Sub-layer names follow timm (`stem.conv`, `s1.b1.conv2.bn`, `s3.b4.se.fc1`, `head.fc`), so a converted timm
checkpoint keeps its keys; only BatchNorm statistics are renamed and the head transposed (`convert/evovit.py`).
"""
from __future__ import annotations

import math
from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddlemix_eva.models.evovit.configuration import RegNetConfig
from paddlemix_eva.models.modeling_utils import ConvertedWeightsMixin, EVAPretrainedModel
from paddlemix_eva.utils import compat


class ConvNormAct(nn.Layer):
    """Conv2D (no bias) -> BatchNorm2D -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class SqueezeExcite(nn.Layer):
    """x * sigmoid(fc2(relu(fc1(mean over space))))."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2D(channels, reduced, 1)
        self.fc2 = nn.Conv2D(reduced, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(axis=[2, 3], keepdim=True))))
        return x * F.sigmoid(gate)


class RegNetBottleneck(nn.Layer):
    """1x1 -> grouped 3x3 (stride) -> SE -> 1x1, plus a 1x1 strided projection shortcut where shapes change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, group_width: int, se_ratio: float):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, 1)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, stride=stride, groups=out_channels // group_width)
        self.se = SqueezeExcite(out_channels, int(round(in_channels * se_ratio)))
        self.conv3 = ConvNormAct(out_channels, out_channels, 1, act=False)
        needs_projection = in_channels != out_channels or stride != 1
        self.downsample = (ConvNormAct(in_channels, out_channels, 1, stride=stride, act=False)
                           if needs_projection else None)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        return F.relu(self.conv3(self.se(self.conv2(self.conv1(x)))) + shortcut)


class RegNetHead(nn.Layer):
    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x.mean(axis=[2, 3]))


class RegNet(ConvertedWeightsMixin, EVAPretrainedModel):
    """RegNetY image classifier (eval-mode teacher; trainable like any classifier)."""

    is_classifier = True

    config_class = RegNetConfig
    base_model_prefix = "regnet"
    macs_linear_in_depth = False

    def __init__(self, config: RegNetConfig):
        super().__init__(config)
        self.stem = ConvNormAct(config.in_chans, config.stem_width, 3, stride=2)
        self.stage_names: List[str] = []
        in_channels = config.stem_width
        for s, (width, depth) in enumerate(zip(config.widths, config.depths), start=1):
            stage = nn.Layer()
            for b in range(1, depth + 1):
                block = RegNetBottleneck(in_channels, width, 2 if b == 1 else 1, config.group_width, config.se_ratio)
                stage.add_sublayer(f"b{b}", block)
                in_channels = width
            self.add_sublayer(f"s{s}", stage)
            self.stage_names.append(f"s{s}")
        self.head = RegNetHead(in_channels, config.num_classes)
        self.init_weights()

    def _init_parameters(self) -> None:
        """timm's: convs normal(0, sqrt(2 / fan_out)), BN 1/0, head normal(0, 0.01) with zero bias."""
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                out_channels, _, kernel_h, kernel_w = layer.weight.shape
                fan_out = out_channels * kernel_h * kernel_w // compat.conv2d_arguments(layer)["groups"]
                nn.initializer.Normal(0.0, math.sqrt(2.0 / fan_out))(layer.weight)
                if layer.bias is not None:
                    nn.initializer.Constant(0.0)(layer.bias)
        nn.initializer.Normal(0.0, 0.01)(self.head.fc.weight)
        nn.initializer.Constant(0.0)(self.head.fc.bias)

    def forward_features(self, image: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(image)
        for name in self.stage_names:
            for block in getattr(self, name).children():
                x = block(x)
        return x

    def extract_feat(self, image: paddle.Tensor, patch_tokens: bool = False) -> paddle.Tensor:
        """Pooled features [B, C] (what `head.fc` sees), or the last stage's feature map as tokens [B, H * W, C]."""
        features = self.forward_features(image)
        if patch_tokens:
            return features.flatten(2).transpose([0, 2, 1])
        return features.mean(axis=[2, 3])

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.forward_features(image))
