"""FLIP-style patch dropout (EVA-CLIP trains with 50%): the layer's selection, the identity where it is off, RoPE rows
that follow each sample's kept patches (against per-sample and numpy references), gradients, the fused CPU RoPE
kernels bypassed for per-sample tables, the config / runtime switch, and open_clip's PatchDropout semantics."""
import numpy as np
import paddle
import pytest

from paddlemix_eva.layers import (
    Attention,
    PatchDropout,
    VisionRotaryEmbedding,
    cpu_kernels,
    gather_rope_tables,
    num_kept_patches,
    switches,
)
from paddlemix_eva.models import EVACLIP, EVACLIPConfig
from paddlemix_eva.models.evaclip import EVACLIPVisionConfig, EVACLIPVisionTransformer
from paddlemix_eva.models.trunk import TrunkSpec, ViTTrunkMixin

from peers import import_open_clip
from tolerances import assert_float32_close

GRID = 4  # 64 px / 16: 16 patches
# an EVA-02-CLIP vision tower (RoPE on the 16x16 pre-training grid, SwiGLU + sub-LN, inner LN), tiny
EVA02_TINY = dict(image_size=64, patch_size=16, width=64, layers=2, head_width=32, mlp_ratio=2.6667, embed_dim=16,
                  qkv_bias=True, rope=True, pt_hw_seq_len=16, intp_freq=True, naiveswiglu=True, subln=True)


def tower(patch_dropout: float = 0.0, seed: int = 0, **fields) -> EVACLIPVisionTransformer:
    paddle.seed(seed)
    model = EVACLIPVisionTransformer(EVACLIPVisionConfig(**{**EVA02_TINY, **fields, "patch_dropout": patch_dropout}))
    rng = np.random.default_rng(seed)
    with paddle.no_grad():  # positions must matter: random pos_embed / cls, q and k scaled up (RoPE shows)
        for param in (model.pos_embed, model.cls_token):
            param.set_value(rng.standard_normal(param.shape).astype("float32"))
        for blk in model.blocks:
            for proj in (blk.attn.q_proj, blk.attn.k_proj):
                proj.weight.set_value(proj.weight * 4.0)
    return model


def images(batch: int = 4, seed: int = 0) -> paddle.Tensor:
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((batch, 3, 64, 64)).astype("float32"))


def coded_tokens(batch: int, num_patches: int, channels: int = 3) -> np.ndarray:
    """Token [b, i] filled with 1000 b + i, so every output row names where it came from."""
    codes = 1000.0 * np.arange(batch)[:, None] + np.arange(1 + num_patches)[None, :]
    return np.repeat(codes[:, :, None], channels, axis=2).astype("float32")


# ----------------------------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("num_patches, ratio", [(16, 0.5), (49, 0.5), (196, 0.5), (49, 0.25), (196, 0.9)])
def test_selection_counts_cls_and_per_sample_draws(num_patches, ratio):
    layer = PatchDropout(ratio)
    layer.train()
    x = coded_tokens(4, num_patches)
    paddle.seed(3)
    out, keep = layer(paddle.to_tensor(x))
    out, keep = out.numpy(), keep.numpy()
    kept = num_kept_patches(num_patches, ratio)
    assert kept == max(1, round((1 - ratio) * num_patches))
    assert out.shape == (4, 1 + kept, 3) and keep.shape == (4, kept) and keep.dtype == np.int64
    np.testing.assert_array_equal(out[:, 0], x[:, 0])  # cls always first, unchanged
    for b in range(4):
        assert np.all(np.diff(keep[b]) > 0) and 0 <= keep[b].min() and keep[b].max() < num_patches
        np.testing.assert_array_equal(out[b, 1:, 0], 1000 * b + 1 + keep[b])  # each sample's own tokens
    assert len({tuple(row) for row in keep}) == 4  # every sample draws its own selection
    paddle.seed(3)
    np.testing.assert_array_equal(layer(paddle.to_tensor(x))[1].numpy(), keep)  # paddle.seed reproduces it
    assert not np.array_equal(layer(paddle.to_tensor(x))[1].numpy(), keep)  # and the next call draws anew


def test_identity_in_eval_and_at_ratio_zero():
    x = paddle.randn([2, 17, 8])
    for layer, training in ((PatchDropout(0.5), False), (PatchDropout(0.0), True)):
        layer.train() if training else layer.eval()
        out, keep = layer(x)
        assert out is x and keep is None  # the same tensor: no copy, no op
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="patch_dropout"):
            PatchDropout(bad)


def test_open_clip_patch_dropout_semantics():
    """open_clip keeps cls and int(N (1 - p)) patches by randn().topk (unsorted); ours argsort-of-noise, sorted:
    the same counts (where the product is whole), cls first, distinct rows of the input, identity in eval."""
    open_clip = import_open_clip()
    import torch

    OpenClipPatchDropout = open_clip.transformer.PatchDropout
    for num_patches, ratio in ((16, 0.5), (196, 0.5), (256, 0.5), (16, 0.25), (100, 0.3)):
        x = coded_tokens(3, num_patches)
        theirs = OpenClipPatchDropout(ratio).train()(torch.from_numpy(x)).numpy()
        ours_layer = PatchDropout(ratio)
        ours_layer.train()
        ours = ours_layer(paddle.to_tensor(x))[0].numpy()
        assert ours.shape == theirs.shape, (num_patches, ratio)
        for out in (ours, theirs):
            np.testing.assert_array_equal(out[:, 0], x[:, 0])
            for b in range(3):
                rows = out[b, 1:, 0] - 1000 * b
                assert len(set(rows)) == len(rows) and set(rows) <= set(range(1, num_patches + 1))
        ours_layer.eval()
        assert np.array_equal(ours_layer(paddle.to_tensor(x))[0].numpy(), OpenClipPatchDropout(ratio).eval()(
            torch.from_numpy(x)).numpy())


# ---------------------------------------------------------------------------------------------- the tower
def test_tower_identical_to_the_plain_model_where_nothing_drops():
    plain, dropping = tower(0.0), tower(0.5)
    dropping.set_state_dict(plain.state_dict())
    image = images()
    plain.train()
    train_out = plain.forward_features(image).numpy()
    plain.set_patch_dropout(0.0)  # ratio 0 set at runtime: still no layer, same path
    assert plain.patch_dropout is None
    assert np.array_equal(plain.forward_features(image).numpy(), train_out)
    plain.eval()
    dropping.eval()
    assert np.array_equal(dropping.forward_features(image).numpy(), plain.forward_features(image).numpy())
    with paddle.no_grad():  # the inference path (fused CPU attention where it runs) too
        assert np.array_equal(dropping.forward_features(image).numpy(), plain.forward_features(image).numpy())
        assert np.array_equal(dropping(image).numpy(), plain(image).numpy())


def _per_sample_reference(model, image, keep):
    """Each sample alone: its tokens (cls + pos_embed added on the full grid) gathered by numpy, and the RoPE rows
    of its positions gathered by numpy as an ordinary shared [1 + K, d] table pair."""
    tokens = model._tokens(model.patch_embed(image)).numpy()
    cos, sin = (t.numpy() for t in model.rope.tables())
    outs = []
    for b in range(tokens.shape[0]):
        rows = np.concatenate([[0], 1 + keep[b]])
        x = paddle.to_tensor(tokens[b:b + 1, rows])
        rope = (paddle.to_tensor(cos[rows]), paddle.to_tensor(sin[rows]))
        for blk in model.blocks:
            x = blk(x, rope)
        outs.append(model.norm(x).numpy()[0])
    return np.stack(outs)


def test_rope_rows_follow_the_kept_patches():
    """The case timm crashed on: RoPE with patch dropout. The batched forward (per-sample tables) equals each sample
    run alone on its kept tokens with its own positions' rows, and not the rows of the first K positions."""
    model = tower(0.5)
    model.train()
    image = images()
    paddle.seed(11)
    out = model.forward_features(image).numpy()
    paddle.seed(11)  # the same draw: the trunk's only RNG use before the blocks is the patch selection
    _, keep = model._drop_patches(model._tokens(model.patch_embed(image)))
    keep = keep.numpy()
    assert out.shape == (4, 1 + GRID * GRID // 2, 64)
    reference = _per_sample_reference(model, image, keep)
    assert_float32_close(out, reference, terms=4 * 170)
    unordered = _per_sample_reference(model, image, np.tile(np.arange(keep.shape[1]), (4, 1)))
    assert np.abs(out - unordered).max() > 1e-2  # sensitive: other positions' rotations give other outputs


def _numpy_attention(attn, x, cos, sin):
    """float64 reference of `Attention` (no inner LN) with per-sample tables cos / sin [B, N, d]."""
    x = x.astype(np.float64)
    heads, dim = attn.num_heads, attn.head_dim

    def proj(layer):
        out = x @ layer.weight.numpy().astype(np.float64)
        return out + (layer.bias.numpy() if layer.bias is not None else 0.0)

    def rotate(t):  # (t0, t1, ...) -> (-t1, t0, ...) per pair, then x cos + rot(x) sin
        t = t.reshape(x.shape[0], x.shape[1], heads, dim)
        pairs = t.reshape(t.shape[:-1] + (dim // 2, 2))
        rot = np.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(t.shape)
        return t * cos[:, :, None] + rot * sin[:, :, None]

    q, k = rotate(proj(attn.q_proj)), rotate(proj(attn.k_proj))
    v = proj(attn.v_proj).reshape(q.shape)
    scores = np.einsum("bnhd,bmhd->bhnm", q, k) * attn.scale
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhnm,bmhd->bnhd", weights, v).reshape(x.shape[0], x.shape[1], heads * dim)
    return out @ attn.output_projection.weight.numpy() + attn.output_projection.bias.numpy()


def _per_sample_setup(batch=3, dim=64, heads=2, seed=0):
    paddle.seed(seed)
    attn = Attention(dim, heads, qkv_bias=True)
    rope = VisionRotaryEmbedding(dim // heads, (GRID, GRID))
    rng = np.random.default_rng(seed)
    keep = np.stack([np.sort(rng.choice(GRID * GRID, 8, replace=False)) for _ in range(batch)])
    x = rng.standard_normal((batch, 9, dim)).astype("float32")
    cos, sin = (t.numpy() for t in rope.tables())
    rows = np.concatenate([np.zeros((batch, 1), np.int64), 1 + keep], axis=1)
    return attn, rope, paddle.to_tensor(keep), x, cos[rows], sin[rows]


def test_attention_with_per_sample_tables_matches_numpy():
    attn, rope, keep, x, cos, sin = _per_sample_setup()
    tables = rope.kept_tables(keep)
    assert [list(t.shape) for t in tables] == [[3, 9, 32]] * 2 and all(t.stop_gradient for t in tables)
    np.testing.assert_array_equal(tables[0].numpy(), cos)
    np.testing.assert_array_equal(gather_rope_tables(rope.tables(), keep)[1].numpy(), sin)
    expected = _numpy_attention(attn, x, cos, sin)
    attn.train()
    xt = paddle.to_tensor(x, stop_gradient=False)  # the training path (gradients)
    assert_float32_close(attn(xt, tables).numpy(), expected, terms=4 * 64)
    attn.eval()
    with paddle.no_grad():  # the inference path (fused CPU attention where it runs, RoPE rotated plainly first)
        assert_float32_close(attn(paddle.to_tensor(x), tables).numpy(), expected, terms=4 * 64)


def test_fused_cpu_rope_kernels_bypassed_for_per_sample_tables(monkeypatch):
    ops = cpu_kernels._ops()
    calls = []
    if ops is not None:
        for name in ("rope_qkv", "rope_qkv_split"):
            original = getattr(ops, name)

            def spy(*args, _original=original, _name=name, **kwargs):
                calls.append((_name, list(args[1].shape)))
                return _original(*args, **kwargs)

            monkeypatch.setattr(ops, name, spy)
    attn, rope, keep, x, cos, sin = _per_sample_setup()
    per_sample = rope.kept_tables(keep)
    results = {}
    for fused in (True, False):
        with switches.FUSED_CPU_OPS.overridden(fused):
            for training in (True, False):
                attn.train() if training else attn.eval()
                xt = paddle.to_tensor(x, stop_gradient=not training)
                with paddle.set_grad_enabled(training):
                    results[fused, training] = attn(xt, per_sample).numpy()
    assert calls == []  # never with per-sample tables
    for training in (True, False):  # and the results equal the plain kernels' (linear / softmax may still fuse)
        assert_float32_close(results[True, training], results[False, training], terms=4 * 64)
    if ops is not None and ops.onednn_info().available:
        shared = rope.tables()
        with switches.FUSED_CPU_OPS.overridden(True):
            attn.train()
            attn(paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 17, 64)).astype("float32"),
                                  stop_gradient=False), shared)
        assert calls and all(shape == [17, 32] for _, shape in calls)  # shared tables still take the kernel


def test_gradients_flow_through_kept_tokens_only():
    model = tower(0.5)
    model.train()
    image = images(1)
    paddle.seed(5)
    features = model(image)
    features.sum().backward()
    paddle.seed(5)
    _, keep = model._drop_patches(model._tokens(model.patch_embed(image)))
    keep = set(keep.numpy()[0].tolist())
    grad = model.pos_embed.grad.numpy()[0]
    assert np.abs(grad[0]).max() > 0  # cls
    for i in range(GRID * GRID):
        assert (np.abs(grad[1 + i]).max() > 0) == (i in keep), i  # dropped positions get exactly 0
    trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    assert model.rope.freqs_cos.stop_gradient and model.rope.freqs_cos.grad is None

    model.clear_gradients(set_to_zero=False)
    for param in model.patch_embed.parameters():  # frozen parameters stay untouched
        param.stop_gradient = True
    model(image).sum().backward()
    assert all(p.grad is None for p in model.patch_embed.parameters())
    assert model.pos_embed.grad is not None


def test_recompute_with_per_sample_tables():
    model = tower(0.5)
    model.train()
    paddle.seed(2)
    x, keep = model._drop_patches(model._tokens(model.patch_embed(images(2))))
    plain = model._forward_blocks(x, keep_index=keep)
    recomputed = model._forward_blocks(x, recompute=True, keep_index=keep)
    np.testing.assert_allclose(recomputed.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)
    recomputed.sum().backward()
    assert model.pos_embed.grad is not None


# --------------------------------------------------------------------------------------- config and switch
def test_config_field_validation_and_runtime_switch():
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match="patch_dropout"):
            EVACLIPVisionConfig(**{**EVA02_TINY, "patch_dropout": bad})
    config = EVACLIPVisionConfig(**{**EVA02_TINY, "patch_dropout": 0.5})
    assert config.trunk_spec().patch_dropout == 0.5
    assert EVACLIPVisionTransformer(config).patch_dropout.ratio == 0.5

    paddle.seed(0)
    fields = dict(embed_dim=16, vision_cfg={k: v for k, v in EVA02_TINY.items() if k != "embed_dim"},
                  text_cfg=dict(width=32, heads=2, layers=1))
    model = EVACLIP(EVACLIPConfig(**fields))
    assert model.visual.patch_dropout is None
    model.visual.set_patch_dropout(0.5)  # what the training script does for `--patch_dropout 0.5`
    assert model.visual.patch_dropout.ratio == 0.5 and model.visual.trunk_spec.patch_dropout == 0.5
    assert model.config.vision_cfg["patch_dropout"] == 0.5  # saved with the model
    assert EVACLIPConfig(**model.config.to_dict()).vision_config.patch_dropout == 0.5
    with pytest.raises(ValueError, match="patch_dropout"):
        model.visual.set_patch_dropout(1.0)

    model.train()  # a CLIP training step with half the patches dropped
    ids = paddle.randint(1, 100, [4, 77])
    out = model(images(4), ids)
    loss = paddle.nn.functional.cross_entropy(out["logits_per_image"], paddle.arange(4))
    loss.backward()
    assert model.visual.pos_embed.grad is not None and model.text.token_embedding.weight.grad is not None
    model.eval()
    with paddle.no_grad():
        evaluated = model.encode_image(images(4)).numpy()
    model.visual.set_patch_dropout(0.0)
    assert model.visual.patch_dropout is None and model.config.vision_cfg.get("patch_dropout", 0.0) == 0.0
    with paddle.no_grad():
        assert np.array_equal(model.encode_image(images(4)).numpy(), evaluated)


def test_trunks_without_the_field_refuse_the_switch():
    class Plain(ViTTrunkMixin, paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self._build_trunk(TrunkSpec(image_size=32, patch_size=16, in_chans=3, dim=32, depth=1, num_heads=2,
                                        mlp_hidden_dim=64, rope=False))

    model = Plain()
    assert model.patch_dropout is None
    with pytest.raises(ValueError, match="does not support patch dropout"):
        model.set_patch_dropout(0.5)
