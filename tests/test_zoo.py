"""The model zoo: every published name, its shipped config, and parameter counts equal to timm's."""
import pytest

from paddlemix_eva import get_model, list_models, zoo
from paddlemix_eva.models import EVA02VisionTransformer, EVA02VisionTransformerForMIM
from paddlemix_eva.tasks import zoo_stats

from peers import import_timm

PUBLISHED = [
    "eva02_Ti_pt_in21k_p14", "eva02_S_pt_in21k_p14", "eva02_B_pt_in21k_p14", "eva02_L_pt_in21k_p14",
    "eva02_B_pt_in21k_p14to16", "eva02_L_pt_in21k_p14to16", "eva02_L_pt_m38m_p14", "eva02_L_pt_m38m_p14to16",
    "eva02_B_pt_in21k_medft_in21k_p14", "eva02_L_pt_in21k_medft_in21k_p14", "eva02_L_pt_m38m_medft_in21k_p14",
    "eva02_Ti_pt_in21k_ft_in1k_p14", "eva02_S_pt_in21k_ft_in1k_p14", "eva02_B_pt_in21k_ft_in1k_p14",
    "eva02_L_pt_in21k_ft_in1k_p14", "eva02_L_pt_m38m_ft_in1k_p14", "eva02_B_pt_in21k_medft_in21k_ft_in1k_p14",
    "eva02_L_pt_in21k_medft_in21k_ft_in1k_p14", "eva02_L_pt_m38m_medft_in21k_ft_in1k_p14",
]
WIDTH = {"Ti": (192, 12, 3), "S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16)}


def test_every_published_name_is_listed_with_the_composite():
    names = list_models()
    assert len(PUBLISHED) == 19
    assert set(PUBLISHED) <= set(names)
    assert "eva02_Ti_for_pretrain" in names
    assert list_models("*_Ti_*") == ["eva02_Ti_pt_in21k_p14", "eva02_Ti_pt_in21k_ft_in1k_p14", "eva02_Ti_for_pretrain"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_config_matches_the_published_architecture(name):
    entry = zoo.get_entry(f"paddlemix/EVA/EVA02/{name}")
    assert entry is zoo.get_entry(name)
    size = name.split("_")[1]
    model_class = entry.load_class()
    config = zoo.build_config(entry)
    assert (config.embed_dim, config.layers, config.num_heads) == WIDTH[size]
    assert config.head_dim == 64 and config.rope and config.qkv_bias
    assert config.use_ffn_ln == (size in ("B", "L"))
    assert config.patch_size == (16 if name.endswith("p14to16") else 14)
    if "_ft_in1k" in name:
        assert model_class is EVA02VisionTransformer
        assert config.num_classes == 1000 and config.image_size == (336 if size in ("Ti", "S") else 448)
        assert entry.top1 is not None
    elif "medft_in21k_p14" in name:
        assert model_class is EVA02VisionTransformer and config.num_classes == 21841 and config.image_size == 448
    else:
        assert model_class is EVA02VisionTransformerForMIM
        assert config.image_size == 224 and config.predict_feature_dim == 1024


@pytest.mark.parametrize(
    "name, expected",
    [
        ("eva02_Ti_pt_in21k_ft_in1k_p14", 5_756_584),
        ("eva02_S_pt_in21k_ft_in1k_p14", 22_129_000),
        ("eva02_B_pt_in21k_ft_in1k_p14", 87_117_544),
        ("eva02_L_pt_in21k_ft_in1k_p14", 305_080_232),
    ],
)
def test_parameter_counts_equal_timms(name, expected):
    assert zoo_stats.count_parameters(name) == expected


@pytest.mark.parametrize("timm_name, ours", [("eva02_tiny_patch14_336", "eva02_Ti_pt_in21k_ft_in1k_p14"),
                                             ("eva02_small_patch14_336", "eva02_S_pt_in21k_ft_in1k_p14")])
def test_parameter_counts_against_a_live_timm_model(timm_name, ours):
    timm = import_timm()
    reference = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    assert zoo_stats.count_parameters(ours) == sum(p.numel() for p in reference.parameters())


def test_get_model_builds_with_overrides_and_unknown_names_get_suggestions():
    model = get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=224, num_classes=7)
    assert model.config.image_size == 224 and model.head.weight.shape == [192, 7]
    assert model.pos_embed.shape == [1, 257, 192]
    with pytest.raises(KeyError, match="eva02_Ti_pt_in21k_ft_in1k_p14"):
        get_model("eva02_Ti_pt_in21k_ft_in1k")


def test_composite_pretraining_entry_names_its_teacher_and_student():
    entry = zoo.get_entry("paddlemix/EVA/EVA02/eva02_Ti_for_pretrain")
    assert entry.config["teacher_config"] == "paddlemix/EVA/EVA01-CLIP-g-14"
    student = entry.config["student_config"]
    assert (student["embed_dim"], student["layers"], student["image_size"]) == (192, 12, 224)
