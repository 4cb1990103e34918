"""Transformer building blocks shared by every model family (EVA-02, EVA-CLIP, MAE, Evo-ViT).

Parameter names follow PaddleMIX (`q_proj`/`k_proj`/`v_proj`, `mlp.w1/w2/w3`, `mlp.ffn_ln`,
`attn.inner_attn_ln`) so published Paddle checkpoints load unchanged. Linear weights are [in, out].

    switches    the kernel switches (fused LayerNorm, fused CPU attention, fused CPU linear / SwiGLU / RoPE)
    cpu_kernels the fused CPU kernels of external_ops, with plain fallbacks
    norm        LayerNorm factory (the fused custom op where installed)
    drop        stochastic depth, FLIP patch dropout
    embed       patch embedding, absolute position tables and their resampling
    naming      parameter names per family (vision / CLIP text)
    mlp         GELU MLP and SwiGLU (with sub-LN)
    rope        2D RoPE tables and their application
    attention   self-attention (RoPE, inner LN, masks, fused kernels)
    block       the transformer block
    init        upstream initialisers
    losses      contrastive and cosine losses
    tensor_parallel  column-parallel Linears on CUDA
"""
from paddlemix_eva.layers import cpu_kernels, switches
from paddlemix_eva.layers.attention import (
    DISABLE_CPU_FUSED_ATTENTION_ENV,
    Attention,
    cpu_fused_attention,
    cpu_fused_attention_available,
    cpu_fused_attention_supported,
)
from paddlemix_eva.layers.block import Block, run_blocks
from paddlemix_eva.layers.drop import DropPath, PatchDropout, check_patch_dropout, drop_path, num_kept_patches
from paddlemix_eva.layers.embed import PatchEmbed, resample_abs_pos_embed, resample_checkpoint_pos_embed, scale_gradient
from paddlemix_eva.layers.init import (
    init_conv_torch_default,
    init_ones,
    init_torch_default,
    init_trunc_normal,
    init_vit_layer,
    init_xavier_uniform,
    init_xavier_uniform_flat,
    init_zeros,
)
from paddlemix_eva.layers.mlp import Mlp, SwiGLU
from paddlemix_eva.layers.naming import CLIP_TEXT_NAMES, VISION_NAMES, LayerNames
from paddlemix_eva.layers.norm import DISABLE_FUSED_LN_ENV, LayerFactory, fused_layer_norm_class, make_layer_norm
from paddlemix_eva.layers.rope import (
    VisionRotaryEmbedding,
    apply_rope,
    apply_rope_elementwise,
    apply_rope_packed_qkv,
    gather_rope_tables,
    pair_rotation_matrix,
    rope_angles,
    rotate_pairs,
    swap_pairs,
)

__all__ = [
    "switches",
    "cpu_kernels",
    "DISABLE_CPU_FUSED_ATTENTION_ENV",
    "Attention",
    "cpu_fused_attention",
    "cpu_fused_attention_available",
    "cpu_fused_attention_supported",
    "Block",
    "run_blocks",
    "DropPath",
    "drop_path",
    "PatchDropout",
    "check_patch_dropout",
    "num_kept_patches",
    "PatchEmbed",
    "resample_abs_pos_embed",
    "resample_checkpoint_pos_embed",
    "scale_gradient",
    "init_conv_torch_default",
    "init_ones",
    "init_torch_default",
    "init_trunc_normal",
    "init_vit_layer",
    "init_xavier_uniform",
    "init_xavier_uniform_flat",
    "init_zeros",
    "Mlp",
    "SwiGLU",
    "CLIP_TEXT_NAMES",
    "VISION_NAMES",
    "LayerNames",
    "DISABLE_FUSED_LN_ENV",
    "LayerFactory",
    "fused_layer_norm_class",
    "make_layer_norm",
    "VisionRotaryEmbedding",
    "apply_rope",
    "apply_rope_elementwise",
    "apply_rope_packed_qkv",
    "gather_rope_tables",
    "pair_rotation_matrix",
    "rope_angles",
    "rotate_pairs",
    "swap_pairs",
]
