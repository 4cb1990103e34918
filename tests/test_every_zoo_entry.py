"""Every model the zoo lists, whatever its family: built (with one block where the published depth is large),
run, saved, reloaded through the family-agnostic loaders, and, for classifiers, predicted on with the
preprocessing and label names its config declares."""
import numpy as np
import paddle
import pytest

from paddlemix_eva import zoo
from paddlemix_eva.tasks.inference import inference_model, load_classifier_for_inference, load_feature_extractor
from paddlemix_eva.utils.resources import sample_image_path

ENTRIES = zoo.entries()


def reduced_fields(entry) -> dict:
    """The entry's config with one block per encoder where the model class can say how (token-pruning and
    convolutional models are small and built whole); a composite's teacher is reduced the same way."""
    model_class = entry.load_class()
    fields = dict(entry.config)
    if model_class.macs_linear_in_depth:
        fields, _ = model_class.config_with_depth(fields, 1)
    if isinstance(fields.get("teacher_config"), str):  # MIM pre-training: the teacher's zoo entry, reduced
        teacher = zoo.get_entry(fields["teacher_config"])
        fields["teacher_config"] = teacher.load_class().config_with_depth(dict(teacher.config), 1)[0]
    return fields


def test_the_zoo_covers_every_family_and_task():
    families = {e.model_class.split(".")[2] for e in ENTRIES}
    assert families == {"eva02", "evaclip", "mae", "evovit"}
    assert {e.task for e in ENTRIES} >= {"classification", "mim", "mim-pretrain", "clip", "mae-pretrain", "mae-encoder"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_builds_runs_saves_reloads_and_predicts(entry, tmp_path):
    model_class = entry.load_class()
    config = entry.build_config(model_class.config_class, **reduced_fields(entry))
    declared = entry.preprocessing
    assert config.preprocessing == declared and declared.image_size == entry.input_size
    paddle.seed(0)
    model = model_class(config).eval()
    image = paddle.to_tensor(np.random.default_rng(0).standard_normal(
        [1, 3, entry.input_size, entry.input_size]).astype("float32"))
    model.save_pretrained(str(tmp_path))
    saved = getattr(model, "student", model) if getattr(model, "save_student_only", False) else model

    if entry.task == "classification":
        assert model_class.is_classifier
        with paddle.no_grad():
            logits = model(image)
        assert list(logits.shape) == [1, config.num_classes] and np.isfinite(logits.numpy()).all()
        reloaded = load_classifier_for_inference(str(tmp_path))
        assert type(reloaded) is model_class and reloaded.config.preprocessing == declared
        with paddle.no_grad():
            np.testing.assert_array_equal(reloaded(image).numpy(), logits.numpy())
        result = inference_model(reloaded, sample_image_path(), topk=3)
        names = config.label_names()
        assert [name for _, _, name in result["topk"]] == [names[label] for label, _, _ in result["topk"]]
        if entry.class_names == "imagenet-1k":
            assert names[0] == "tench" and len(names) == 1000
    else:
        with pytest.raises(ValueError, match="classification head"):
            load_classifier_for_inference(str(tmp_path))
        extractor = load_feature_extractor(str(tmp_path))
        assert extractor.config.preprocessing == declared
        with paddle.no_grad():
            features = extractor.extract_feat(image) if hasattr(extractor, "extract_feat") else \
                extractor.encode_image(image)
        assert features.ndim == 2 and features.shape[0] == 1 and np.isfinite(features.numpy()).all()
        reloaded_state = extractor.state_dict()
        for name, value in saved.state_dict().items():
            if name in reloaded_state:  # an encoder built from a pre-training model leaves its decoder / lm_head
                np.testing.assert_array_equal(reloaded_state[name].numpy(), value.numpy(), err_msg=name)
