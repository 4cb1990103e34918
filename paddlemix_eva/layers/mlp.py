"""Feed-forward blocks: GELU MLP and SwiGLU, with optional sub-LN."""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from paddlemix_eva.layers import cpu_kernels
from paddlemix_eva.layers.attention import project_with_residual
from paddlemix_eva.layers.naming import VISION_NAMES, LayerNames
from paddlemix_eva.layers.norm import LayerFactory


class _FeedForward(nn.Layer):
    """hidden = f(x); [ffn_ln(hidden)]; output projection; dropout; [+ residual, inside the projection's GEMM
    where the fused CPU kernels run]. Subclasses define the hidden map."""

    def _finish(self, hidden: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        if self.ffn_ln is not None:
            hidden = self.ffn_ln(hidden)
        return project_with_residual(self.output_projection, hidden, self.drop, residual)

    def _build_output(self, hidden_features: int, out_features: int, drop: float, norm_layer, subln: bool,
                      out_name: str):
        self.ffn_ln = norm_layer(hidden_features) if subln else None
        self._out_name = out_name
        self.add_sublayer(out_name, nn.Linear(hidden_features, out_features))
        self.drop = nn.Dropout(drop) if drop > 0 else None

    @property
    def output_projection(self) -> nn.Linear:
        return getattr(self, self._out_name)


class Mlp(_FeedForward):
    """GELU MLP (EVA-01 / EVA-CLIP g-14 and E, CLIP text, MAE, DeiT), optionally with a sub-LN on the hidden
    activations. `names` picks the Linear names (`fc1`/`fc2`, or CLIP text's `c_fc`/`c_proj`)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: Optional[int] = None,
        drop: float = 0.0,
        norm_layer: Optional[LayerFactory] = None,
        subln: bool = False,
        names: LayerNames = VISION_NAMES,
    ):
        super().__init__()
        self._in_name = names.fc1
        self.add_sublayer(names.fc1, nn.Linear(in_features, hidden_features))
        self.act = nn.GELU()
        self._build_output(hidden_features, out_features or in_features, drop, norm_layer, subln, names.fc2)

    def forward(self, x: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        fc1 = getattr(self, self._in_name)
        fused = type(fc1) is nn.Linear and cpu_kernels.enabled_for(x)
        hidden = cpu_kernels.linear(x, fc1.weight, fc1.bias) if fused else fc1(x)
        return self._finish(self.act(hidden), residual)


class SwiGLU(_FeedForward):
    """SwiGLU: w3([ffn_ln](silu(w1 x) * w2 x)). w1 is the gate; sub-LN on the hidden size for EVA-02 B/L."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: Optional[int] = None,
        drop: float = 0.0,
        norm_layer: Optional[LayerFactory] = None,
        subln: bool = False,
        names: LayerNames = VISION_NAMES,
    ):
        super().__init__()
        self.w1 = nn.Linear(in_features, hidden_features)
        self.w2 = nn.Linear(in_features, hidden_features)
        # Swish with beta 1 is SiLU; Paddle's `swish` has a oneDNN kernel (and fuses into the preceding fc in
        # Paddle Inference), its `silu` only a plain single-threaded CPU kernel.
        self.act = nn.Swish()
        self._build_output(hidden_features, out_features or in_features, drop, norm_layer, subln, "w3")

    def forward(self, x: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        if cpu_kernels.enabled_for(x) and type(self.w1) is nn.Linear and type(self.w2) is nn.Linear:
            # one GEMM for gate and value ([D, 2H], gate first), one pass for silu(gate) * value
            weight = paddle.concat([self.w1.weight, self.w2.weight], axis=1)
            bias = paddle.concat([self.w1.bias, self.w2.bias]) if self.w1.bias is not None else None
            hidden = cpu_kernels.swiglu(cpu_kernels.linear(x, weight, bias))
        else:
            hidden = self.act(self.w1(x)) * self.w2(x)
        return self._finish(hidden, residual)
