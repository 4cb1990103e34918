"""EVA-CLIP: parity with open_clip / timm on sensitive random weights, tokenizer ids, conversion, MIM teacher."""
import os
import re

import numpy as np
import paddle
import pytest

from paddlemix_eva import get_model, zoo
from paddlemix_eva.convert import convert_checkpoint
from paddlemix_eva.convert.keymaps import vision_to_paddlemix
from paddlemix_eva.models import EVACLIP
from paddlemix_eva.models.evaclip import EVACLIPVisionConfig, EVACLIPVisionTransformer, get_tokenizer
from paddlemix_eva.tasks import zoo_stats

from peers import import_open_clip, import_timm, make_sensitive, seeded_images, torch_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEXTS = [
    "a photo of a cat.",
    "Hello, World!!! What's up?",
    "naïve café — 東京タワー 🚀 ÉCOLE",
    "it's 3.14159 and I'd've gone; don't",
    "  lots   of\twhitespace\n and &amp; html &lt;b&gt; entities ",
    "Ã©mojibake gets fixed",
    " ".join(["a very long caption"] * 40),
    "",
]


@pytest.fixture(scope="module")
def open_clip_b16():
    """open_clip's EVA02-B-16 with sensitive random weights, and its outputs on fixed inputs."""
    open_clip = import_open_clip()
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("EVA02-B-16", pretrained=None).eval()
    make_sensitive(model)
    images = seeded_images(2, 224)
    ids = get_tokenizer()(TEXTS[:4])
    with torch.no_grad():
        image_features = model.encode_image(torch.tensor(images)).numpy()
        text_features = model.encode_text(torch.tensor(ids)).numpy()
    return {
        "state": torch_state_dict(model),
        "images": images,
        "ids": ids,
        "image": image_features,
        "text": text_features,
        "logit_scale": float(model.logit_scale.exp()),
    }


def _official_layout(open_clip_state: dict) -> dict:
    """The official EVA-CLIP (rei) layout: `visual.` with q_bias/v_bias/inner_attn_ln/w1/w2/ffn_ln/w3, the text
    tower's keys at top level, RoPE buffers persisted."""
    renames = [
        (r"\.attn\.q_proj\.bias$", ".attn.q_bias"), (r"\.attn\.v_proj\.bias$", ".attn.v_bias"),
        (r"\.attn\.norm\.", ".attn.inner_attn_ln."), (r"\.mlp\.fc1_g\.", ".mlp.w1."), (r"\.mlp\.fc1_x\.", ".mlp.w2."),
        (r"\.mlp\.norm\.", ".mlp.ffn_ln."), (r"\.mlp\.fc2\.", ".mlp.w3."),
    ]
    out = {}
    for key, value in open_clip_state.items():
        if key.startswith("visual.trunk."):
            key = "visual." + key[len("visual.trunk."):]
            for pattern, repl in renames:
                key = re.sub(pattern, repl, key)
        elif key.startswith("text."):
            key = key[len("text."):]
        out[key] = value
    out["visual.rope.freqs_cos"] = out["visual.rope.freqs_sin"] = np.zeros((196, 64), np.float32)
    return {"state_dict": out}


@pytest.mark.parametrize("fmt", ["open_clip", "official"])
def test_eva02_clip_b16_matches_open_clip(open_clip_b16, fmt, tmp_path):
    state = open_clip_b16["state"] if fmt == "open_clip" else _official_layout(open_clip_b16["state"])["state_dict"]
    out = convert_checkpoint(state, fmt, out=str(tmp_path / "b16"))
    model = EVACLIP.from_pretrained(out).eval()
    assert model.config.vision_config.inner_attn_ln and model.config.embed_dim == 512
    with paddle.no_grad():
        image = model.encode_image(paddle.to_tensor(open_clip_b16["images"])).numpy()
        text = model.encode_text(paddle.to_tensor(open_clip_b16["ids"])).numpy()
        joint = model(paddle.to_tensor(open_clip_b16["images"]), paddle.to_tensor(open_clip_b16["ids"]))
    np.testing.assert_allclose(image, open_clip_b16["image"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(text, open_clip_b16["text"], atol=1e-4, rtol=1e-4)
    # forward: normalised features and scaled cosine logits
    normed_i = open_clip_b16["image"] / np.linalg.norm(open_clip_b16["image"], axis=-1, keepdims=True)
    normed_t = open_clip_b16["text"] / np.linalg.norm(open_clip_b16["text"], axis=-1, keepdims=True)
    np.testing.assert_allclose(joint["image_features"].numpy(), normed_i, atol=1e-5)
    expected_logits = open_clip_b16["logit_scale"] * normed_i @ normed_t.T
    np.testing.assert_allclose(joint["logits_per_image"].numpy(), expected_logits, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(joint["logits_per_text"].numpy(), expected_logits.T, atol=1e-3, rtol=1e-4)


def _shrunk_vision_parity(timm_name, timm_kwargs, our_fields):
    timm = import_timm()
    import torch

    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False, **timm_kwargs).eval()
    make_sensitive(reference)
    images = seeded_images(2, 224)
    with torch.no_grad():
        tokens = reference.forward_features(torch.tensor(images))
        pooled = reference.forward_head(tokens).numpy()
        per_patch = reference.head(tokens[:, 1:]).numpy()
    tower = EVACLIPVisionTransformer(EVACLIPVisionConfig(**our_fields))
    state = vision_to_paddlemix(torch_state_dict(reference), "timm")
    missing, unexpected = tower.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    assert not missing and not unexpected
    tower.eval()
    with paddle.no_grad():
        x = paddle.to_tensor(images)
        np.testing.assert_allclose(tower(x).numpy(), pooled, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(tower.forward_tokens(x).numpy(), per_patch, atol=1e-4, rtol=1e-4)


def test_eva01_style_tower_matches_timm_giant_layout():
    """The MIM teacher's architecture (EVA01-CLIP-g/14: fused qkv + q/v bias, GELU MLP, no RoPE, 88-d heads),
    shrunk to 2 blocks of width 176."""
    _shrunk_vision_parity(
        "eva_giant_patch14_clip_224",
        dict(embed_dim=176, num_heads=2, depth=2, num_classes=32),
        dict(image_size=224, patch_size=14, width=176, layers=2, head_width=88, mlp_ratio=6144 / 1408,
             qkv_bias=True, rope=False, naiveswiglu=False, subln=False, embed_dim=32),
    )


def test_post_norm_tower_matches_timm_enormous_layout():
    """EVA-02-CLIP-E's post-norm residual blocks, shrunk."""
    _shrunk_vision_parity(
        "eva02_enormous_patch14_clip_224",
        dict(embed_dim=224, num_heads=2, depth=2, num_classes=32),
        dict(image_size=224, patch_size=14, width=224, layers=2, head_width=112, mlp_ratio=15360 / 1792,
             qkv_bias=True, rope=False, naiveswiglu=False, subln=False, postnorm=True, embed_dim=32),
    )


def test_tokenizer_ids_equal_open_clips():
    open_clip = import_open_clip()
    reference = open_clip.get_tokenizer("EVA02-B-16")
    ids = get_tokenizer()(TEXTS)
    np.testing.assert_array_equal(ids, reference(TEXTS).numpy())
    assert ids.shape == (len(TEXTS), 77) and ids.dtype == np.int64
    long_row = ids[TEXTS.index(" ".join(["a very long caption"] * 40))]
    assert long_row[0] == 49406 and long_row[-1] == 49407  # truncation keeps the end token last
    assert get_tokenizer().decode(ids[0]) == "a photo of a cat ."


def test_tokenizer_repairs_mojibake_like_open_clip():
    """ftfy runs (it is a runtime requirement): mis-decoded UTF-8 gives the ids of the intended text."""
    tokenizer = get_tokenizer()
    np.testing.assert_array_equal(tokenizer(["a caf\u00c3\u00a9 at night"]), tokenizer(["a caf\u00e9 at night"]))
    assert not np.array_equal(tokenizer(["a caf\u00e9"]), tokenizer(["a cafe"]))
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        assert "ftfy" in [line.strip() for line in f]


def test_named_configs_build_with_published_parameter_counts():
    expected = {"EVA02-CLIP-B-16": 149_691_137, "EVA02-CLIP-L-14": 427_755_457, "EVA01-CLIP-g-14": 1_136_435_841}
    for name, count in expected.items():
        assert zoo_stats.count_parameters(f"paddlemix/EVA/{name}") == count
    names = zoo.list_models("EVA0*-CLIP-*")
    assert names == ["EVA01-CLIP-g-14", "EVA01-CLIP-g-14-plus", "EVA02-CLIP-B-16", "EVA02-CLIP-L-14",
                     "EVA02-CLIP-L-14-336", "EVA02-CLIP-bigE-14", "EVA02-CLIP-bigE-14-plus"]
    teacher = zoo.build_config(zoo.get_entry("EVA01-CLIP-g-14")).vision_config
    assert (teacher.width, teacher.layers, teacher.num_heads, teacher.mlp_hidden_dim) == (1408, 40, 16, 6144)
    assert not teacher.rope and not teacher.use_mean_pooling


def _tiny_clip():
    fields = dict(
        embed_dim=16,
        vision_cfg=dict(image_size=28, patch_size=14, width=64, layers=2, head_width=32, mlp_ratio=2.6667,
                        qkv_bias=True, rope=True, intp_freq=True, naiveswiglu=True, subln=True),
        text_cfg=dict(width=32, heads=2, layers=1, vocab_size=49408),
    )
    from paddlemix_eva.models import EVACLIPConfig

    return EVACLIP(EVACLIPConfig(**fields))


def test_mim_teacher_tokens_and_round_trip(tmp_path):
    model = _tiny_clip()
    model.eval()
    images = paddle.randn([2, 3, 28, 28])
    with paddle.no_grad():
        tokens = model.encode_image_tokens(images)
        pooled = model.encode_image(images)
    assert tokens.shape == [2, 4, 16]
    # the pooled feature is the same head applied to the cls token after the same final norm
    with paddle.no_grad():
        normed = model.visual.forward_features(images)
        np.testing.assert_allclose(model.visual.head(normed[:, 0]).numpy(), pooled.numpy(), atol=1e-6)
    model.save_pretrained(str(tmp_path))
    again = EVACLIP.from_pretrained(str(tmp_path))
    again.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(again.encode_image_tokens(images).numpy(), tokens.numpy())
    assert again.logit_scale.shape == [1]


def test_logit_scale_is_clamped_at_100():
    model = _tiny_clip()
    with paddle.no_grad():
        model.logit_scale.set_value(paddle.to_tensor([10.0]))
    assert abs(float(model.scale()) - 100.0) < 1e-3


def test_bad_text_input_is_refused():
    model = _tiny_clip()
    with pytest.raises(ValueError, match="token ids"):
        model.encode_text(paddle.zeros([2, 80], dtype="int64"))


def test_get_model_builds_a_named_clip_without_weights():
    model = get_model("EVA02-CLIP-B-16")
    assert type(model) is EVACLIP and model.visual.rope.grid_size == (14, 14)


def test_official_eva01_clip_checkpoint_matches_timm_and_open_clip(tmp_path):
    """An official EVA-01 CLIP state dict assembled from the peers: the vision tower is timm's EVA-01 (official key
    names: fused `qkv` + `q_bias`/`v_bias`, `mlp.fc1/fc2`) under `visual.`, the text tower open_clip's CLIP text
    transformer (`in_proj_weight`, ...) at top level, a 0-d `logit_scale`. Converted, both encoders equal the
    peers' forwards."""
    timm = import_timm()
    open_clip = import_open_clip()
    import torch

    torch.manual_seed(0)
    vision = timm.create_model("eva_giant_patch14_clip_224", pretrained=False, img_size=28, embed_dim=176,
                               num_heads=2, depth=2, num_classes=24).eval()
    text = open_clip.transformer.TextTransformer(context_length=77, vocab_size=49408, width=64, heads=1, layers=2,
                                                 output_dim=24).eval()
    make_sensitive(vision)
    with torch.no_grad():
        for param in text.parameters():
            param.add_(0.02 * torch.randn(param.shape))
    official = {"visual." + k: v for k, v in torch_state_dict(vision).items()}
    official.update(torch_state_dict(text))
    official["logit_scale"] = np.asarray(np.log(1 / 0.07), np.float32)
    assert "visual.blocks.0.attn.qkv.weight" in official and "transformer.resblocks.0.attn.in_proj_weight" in official
    model = EVACLIP.from_pretrained(convert_checkpoint(official, "official", out=str(tmp_path / "eva01"))).eval()
    assert not model.config.vision_config.inner_attn_ln or not model.config.vision_config.subln
    images = seeded_images(2, 28)
    ids = get_tokenizer()(["red", "a blue thing"])
    with torch.no_grad():
        expected_image = vision(torch.tensor(images)).numpy()
        expected_text = text(torch.tensor(ids)).numpy()
    with paddle.no_grad():
        np.testing.assert_allclose(model.encode_image(paddle.to_tensor(images)).numpy(), expected_image,
                                   atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(model.encode_text(paddle.to_tensor(ids)).numpy(), expected_text,
                                   atol=1e-4, rtol=1e-4)
    assert float(model.logit_scale) == pytest.approx(np.log(1 / 0.07), rel=1e-6)
