"""Numerical parity with timm's EVA-02 on random weights made sensitive to layout and RoPE bugs.

Tolerances from `parity_keymaps.md` 3.2: logits 1e-4 (an independent fp32 forward agrees to ~3e-6; a wrong RoPE
position scale shows as >= 1e-3 with the x5 q/k gain), RoPE tables 1e-6.
"""
import re

import numpy as np
import paddle
import pytest

from paddlemix_eva.convert import convert_checkpoint
from paddlemix_eva.models import EVA02VisionTransformer

from peers import import_timm, make_sensitive, seeded_images, torch_state_dict

CASES = {
    # name: (timm model, timm kwargs, input size)
    "Ti@336": ("eva02_tiny_patch14_336", {}, 336),
    "S@336": ("eva02_small_patch14_336", {}, 336),
    # B/L layout (separate q/k/v, SwiGLU with sub-LN) at 448: 32x32 grid, RoPE positions in steps of 0.5
    "B-subln@448": ("eva02_base_patch14_448", {"depth": 2}, 448),
}


@pytest.fixture(scope="module", params=list(CASES))
def reference(request):
    """A sensitive timm model, its inputs and outputs (computed once per case)."""
    timm = import_timm()
    import torch

    model_name, kwargs, size = CASES[request.param]
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=1000, **kwargs).eval()
    make_sensitive(model)
    images = seeded_images(2, size)
    with torch.no_grad():
        x = torch.tensor(images)
        tokens = model.forward_features(x)
        pre_logits = model.forward_head(tokens, pre_logits=True)
        logits = model.forward_head(tokens)
    return {
        "case": request.param,
        "model": model,
        "state": torch_state_dict(model),
        "images": images,
        "tokens": tokens.numpy(),
        "pre_logits": pre_logits.numpy(),
        "logits": logits.numpy(),
        "rope": model.rope.get_embed().numpy(),  # [N, 2*head_dim] = cat(sin, cos)
    }


def timm_to_official(state: dict) -> dict:
    """The official EVA-02 (asuka) layout of a timm state dict, with the persistent RoPE buffers it carries."""
    renames = [
        (r"\.attn\.q_proj\.bias$", ".attn.q_bias"),
        (r"\.attn\.v_proj\.bias$", ".attn.v_bias"),
        (r"\.mlp\.fc1_g\.", ".mlp.w1."),
        (r"\.mlp\.fc1_x\.", ".mlp.w2."),
        (r"\.mlp\.norm\.", ".mlp.ffn_ln."),
        (r"\.mlp\.fc1\.", ".mlp.w12."),
        (r"\.mlp\.fc2\.", ".mlp.w3."),
    ]
    out = {}
    for key, value in state.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        out[key] = value
    depth = 1 + max(int(k.split(".")[1]) for k in out if k.startswith("blocks."))
    junk = np.random.default_rng(1).standard_normal((16, 16, 64)).astype(np.float32)
    out["rope.freqs_cos"] = out["rope.freqs_sin"] = junk
    for i in range(depth):
        out[f"blocks.{i}.attn.rope.freqs_cos"] = out[f"blocks.{i}.attn.rope.freqs_sin"] = junk
    return {"model": out}


def _load_ours(reference, fmt, tmp_path):
    if fmt == "timm-safetensors":
        from safetensors.numpy import save_file

        path = str(tmp_path / "timm.safetensors")
        save_file({k: np.ascontiguousarray(v) for k, v in reference["state"].items()}, path)
        out = convert_checkpoint(path, "timm", out=str(tmp_path / "converted"))
    else:
        wrapped = timm_to_official(reference["state"])
        assert any(k.endswith("attn.q_bias") or ".mlp.w12." in k for k in wrapped["model"])
        out = convert_checkpoint(wrapped["model"], "official", out=str(tmp_path / "converted"))
    return EVA02VisionTransformer.from_pretrained(out).eval()


@pytest.mark.parametrize("fmt", ["timm-safetensors", "official"])
def test_forward_matches_timm(reference, fmt, tmp_path):
    model = _load_ours(reference, fmt, tmp_path)
    with paddle.no_grad():
        x = paddle.to_tensor(reference["images"])
        tokens = model.forward_features(x)
        pre_logits = model.forward_head(tokens, pre_logits=True).numpy()
        logits = model.forward_head(tokens).numpy()
    token_tol = 1e-4 if reference["case"].startswith("Ti") else 2e-4
    np.testing.assert_allclose(tokens.numpy(), reference["tokens"], atol=token_tol, rtol=0)
    np.testing.assert_allclose(pre_logits, reference["pre_logits"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4, rtol=1e-4)
    assert (logits.argmax(-1) == reference["logits"].argmax(-1)).all()


def test_rope_tables_match_timm_and_a_wrong_scale_is_caught(reference, tmp_path):
    model = _load_ours(reference, "timm-safetensors", tmp_path)
    cos, sin = (t.numpy() for t in model.rope.tables())
    ref_sin, ref_cos = np.split(reference["rope"], 2, axis=-1)
    # our tables carry an identity row for the cls token in front
    np.testing.assert_array_equal(cos[0], 1.0)
    np.testing.assert_array_equal(sin[0], 0.0)
    np.testing.assert_allclose(cos[1:], ref_cos, atol=1e-6, rtol=0)
    np.testing.assert_allclose(sin[1:], ref_sin, atol=1e-6, rtol=0)

    # The fixture is sensitive: integer (unrescaled) RoPE positions, the classic porting bug above 224 px,
    # move the logits far beyond the parity tolerance.
    grid = model.rope.grid_size
    model.rope.pt_seq_len = None
    model.rope.grid_size = (0, 0)
    model.rope.set_grid_size(grid)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(reference["images"])).numpy()
    assert np.abs(logits - reference["logits"]).max() > 1e-3
