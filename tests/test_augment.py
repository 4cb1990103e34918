"""EVA-02 fine-tuning augmentation (paddlemix_eva.augment): behaviour checks plus cheap parity checks with timm."""
import math
import random

import numpy as np
import pytest
from PIL import Image

from paddlemix_eva.data.augment import (
    DEFAULT_OPS,
    INCREASING_OPS,
    RANDAUG_OPS,
    ColorJitter,
    Mixup,
    RandAugment,
    RandomErasing,
    TrainTransform,
    apply_op,
    build_eval_transform,
    build_train_transform,
    mixup_target,
)
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD, EvalTransform

from peers import import_timm


def structured_image(width: int = 48, height: int = 48) -> Image.Image:
    """Gradients, a checkerboard and a disc; every channel stays within 30..220 so AutoContrast has work to do."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 30 + 190 * xx / (width - 1)
    green = 30 + 190 * yy / (height - 1)
    blue = np.where(((xx // 6 + yy // 6) % 2) == 0, 60.0, 200.0)
    disc = (xx - 0.6 * width) ** 2 + (yy - 0.4 * height) ** 2 < (0.2 * min(width, height)) ** 2
    red[disc], green[disc], blue[disc] = 210.0, 90.0, 40.0
    return Image.fromarray(np.stack([red, green, blue], -1).round().astype(np.uint8), "RGB")


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


# ------------------------------------------------------------------------------------------------ RandAugment


def test_policy_parsing_eva02_recipe():
    aug = RandAugment.from_policy("rand-m9-mstd0.5-inc1", 224, CLIP_MEAN)
    assert aug.magnitude == 9 and aug.magnitude_std == 0.5 and aug.magnitude_max is None
    assert aug.ops == INCREASING_OPS and aug.increasing
    assert aug.num_ops == 2 and aug.prob == 0.5
    assert aug.fill == (123, 117, 104)  # round(255 * CLIP_MEAN), timm's img_mean
    assert aug.translate_const == int(224 * 0.45)


def test_policy_parsing_other_tokens():
    aug = RandAugment.from_policy("rand-n3-m5", 224)
    assert aug.num_ops == 3 and aug.magnitude == 5 and aug.magnitude_std == 0
    assert aug.ops == DEFAULT_OPS and not aug.increasing
    aug = RandAugment.from_policy("rand-mstd101-p0.3-mmax15-inc0", 224)
    assert aug.magnitude == 10 and aug.magnitude_std == math.inf  # > 100 means uniform in [0, m], as timm
    assert aug.prob == 0.3 and aug.magnitude_max == 15 and aug.ops == DEFAULT_OPS


@pytest.mark.parametrize("policy, token", [
    ("rand-m9-x3", "x3"), ("rand-m9-tweights", "tweights"), ("rand-inc2", "inc2"), ("rand--m9", "''"),
    ("rand-n2.5", "n2.5"), ("rand-m9-mstd", "mstd"),
])
def test_policy_unknown_token_refused(policy, token):
    with pytest.raises(ValueError, match=token):
        RandAugment.from_policy(policy, 224)


def test_policy_must_be_randaugment():
    with pytest.raises(ValueError, match="rand"):
        RandAugment.from_policy("original-mstd0.5", 224)


def test_policy_matches_timm():
    import_timm()
    from timm.data.auto_augment import rand_augment_transform

    for policy in ("rand-m9-mstd0.5-inc1", "rand-n3-m5", "rand-m7-p0.3-mmax12"):
        ours = RandAugment.from_policy(policy, 224, CLIP_MEAN)
        hparams = dict(translate_const=int(224 * 0.45), img_mean=tuple(min(255, round(255 * m)) for m in CLIP_MEAN))
        ref = rand_augment_transform(policy, hparams)
        assert ref.num_layers == ours.num_ops
        assert tuple(op.name for op in ref.ops) == ours.ops
        for op in ref.ops:
            assert op.magnitude == ours.magnitude and op.prob == ours.prob
            assert op.magnitude_std == ours.magnitude_std and op.magnitude_max == ours.magnitude_max
            assert tuple(op.kwargs["fillcolor"]) == ours.fill


@pytest.mark.parametrize("name", INCREASING_OPS)
def test_each_op_changes_image_and_keeps_size_mode(name):
    img = structured_image(48, 40)
    for negate in (False, True):
        out = apply_op(img, name, 9, negate=negate, fill=(123, 117, 104))
        assert out.size == img.size and out.mode == "RGB"
        assert np.abs(pixels(out) - pixels(img)).mean() > 1.0, (name, negate)


def test_ops_match_timm_functions():
    """Every op, at several magnitudes and both signs, is pixel-identical to timm's op with the same arguments."""
    import_timm()
    from timm.data.auto_augment import LEVEL_TO_ARG, NAME_TO_OP

    img = structured_image(40, 32)
    hparams = dict(translate_const=18, img_mean=(123, 117, 104))
    checked = 0
    names = sorted(set(INCREASING_OPS) | set(DEFAULT_OPS) | {"TranslateX", "TranslateY"})
    assert set(names) == set(RANDAUG_OPS)
    for name in names:
        for magnitude in (0, 4, 9, 10):
            for seed in range(4):  # timm negates with python's random: find the sign it will use, then replay
                random.seed(seed)
                negate = random.random() > 0.5
                random.seed(seed)
                level_fn = LEVEL_TO_ARG[name]
                args = level_fn(magnitude, hparams) if level_fn is not None else ()
                try:
                    ref = NAME_TO_OP[name](img, *args, fillcolor=hparams["img_mean"], resample=Image.BICUBIC)
                except ValueError:  # Pillow >= 10 refuses posterize(bits=0); older Pillow returned black
                    assert name.startswith("Posterize") and args == (0,)
                    ref = Image.new("RGB", img.size)
                ours = apply_op(img, name, magnitude, negate=negate, fill=hparams["img_mean"], resample=Image.BICUBIC,
                                translate_const=hparams["translate_const"])
                np.testing.assert_array_equal(pixels(ours), pixels(ref), err_msg=f"{name} m={magnitude} neg={negate}")
                checked += 1
    assert checked == len(RANDAUG_OPS) * 16


@pytest.mark.parametrize("name", ["Rotate", "BrightnessIncreasing", "ContrastIncreasing", "SolarizeIncreasing"])
def test_larger_magnitude_deviates_more(name):
    img = structured_image()
    deviation = [np.abs(pixels(apply_op(img, name, m)) - pixels(img)).mean() for m in (0, 3, 6, 10)]
    assert deviation[0] == 0.0
    assert all(a < b for a, b in zip(deviation, deviation[1:])), deviation


def test_randaugment_changes_images_and_is_seeded():
    img = structured_image()
    aug = RandAugment.from_policy("rand-m9-mstd0.5-inc1", 48, CLIP_MEAN)
    outputs = []
    for seed in range(20):
        first = pixels(aug(img, rng=np.random.default_rng(seed)))
        np.testing.assert_array_equal(first, pixels(aug(img, rng=np.random.default_rng(seed))))
        np.testing.assert_array_equal(first, pixels(aug(img, rng=seed)))  # an int seed is the same Generator
        outputs.append(first.tobytes())
    changed = sum(out != pixels(img).tobytes() for out in outputs)
    assert changed >= 12, changed  # each op is skipped with p=0.5, so ~1/4 of images keep both ops off
    assert len(set(outputs)) >= 12
    # rng=None draws from numpy's global RNG (what Paddle's DataLoader seeds per worker)
    np.random.seed(3)
    first = pixels(aug(img))
    np.random.seed(3)
    np.testing.assert_array_equal(first, pixels(aug(img)))


def test_randaugment_magnitude_noise_and_ceiling():
    img = structured_image()
    fixed = RandAugment(ops=("Rotate",), num_ops=1, prob=1.0, magnitude=5, interpolation="bicubic")
    noisy = RandAugment(ops=("Rotate",), num_ops=1, prob=1.0, magnitude=5, magnitude_std=1.0,
                        interpolation="bicubic")
    assert len({fixed(img, rng=s).tobytes() for s in range(16)}) == 2  # only the sign is random
    assert len({noisy(img, rng=s).tobytes() for s in range(16)}) >= 12
    # brightness factor 1 +- 0.9 * m / 10: clipped at m = 10 it stays within [0.1, 1.9]; mmax lifts the ceiling
    gray = Image.new("RGB", (4, 4), (100, 100, 100))
    values = {}
    for policy in ("rand-n1-p1-m10-mstd3", "rand-n1-p1-m10-mstd3-mmax15"):
        aug = RandAugment.from_policy(policy, 4)
        aug.ops = ("BrightnessIncreasing",)
        values[policy] = [int(np.asarray(aug(gray, rng=s))[0, 0, 0]) for s in range(60)]
    assert max(values["rand-n1-p1-m10-mstd3"]) == 190 and min(values["rand-n1-p1-m10-mstd3"]) == 10
    assert max(values["rand-n1-p1-m10-mstd3-mmax15"]) > 200


def test_randaugment_prob_zero_is_identity_and_rgb_required():
    img = structured_image()
    aug = RandAugment.from_policy("rand-m9-p0-inc1", 48)
    for seed in range(10):
        np.testing.assert_array_equal(pixels(aug(img, rng=seed)), pixels(img))
    with pytest.raises(ValueError, match="RGB"):
        aug(img.convert("L"))


# ------------------------------------------------------------------------------------------------ random erasing


def _single_rectangle(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert mask.sum() == h * w, "erased pixels do not form one rectangle"
    return h, w


def test_random_erasing_area_distribution_and_untouched_rest():
    size = 96
    x = np.full((3, size, size), 5.0, np.float32)  # N(0, 1) noise never equals 5.0 exactly
    erase = RandomErasing(1.0, mode="pixel", min_area=0.02, max_area=1 / 3, min_aspect=0.5, count=1)
    rng = np.random.default_rng(0)
    fractions, aspects = [], []
    for _ in range(400):
        out = erase(x, rng=rng)
        assert out.shape == x.shape and out.dtype == np.float32
        changed = out != x
        assert (changed.all(0) == changed.any(0)).all()  # all three channels erased together
        mask = changed[0]
        h, w = _single_rectangle(mask)
        fractions.append(mask.mean())
        aspects.append(h / w)
    fractions = np.asarray(fractions)
    assert (x == 5.0).all()  # input not modified
    assert fractions.min() >= 0.02 * 0.85 and fractions.max() <= (1 / 3) * 1.1  # rounding of h and w
    assert abs(fractions.mean() - (0.02 + 1 / 3) / 2) < 0.015  # area ~ U(min_area, max_area)
    assert min(aspects) >= 0.5 * 0.8 and max(aspects) <= 2.0 * 1.25
    assert np.mean(np.log(aspects)) == pytest.approx(0.0, abs=0.06)  # log-uniform on a symmetric range


def test_random_erasing_modes_and_probability():
    x = np.random.default_rng(1).normal(size=(3, 32, 40)).astype(np.float32)
    never = RandomErasing(0.0, mode="pixel")
    for seed in range(30):
        np.testing.assert_array_equal(never(x, rng=seed), x)

    out = RandomErasing(1.0, mode="const")(x, rng=0)
    mask = (out != x).any(0)
    _single_rectangle(mask)
    assert (out[:, mask] == 0).all() and (out[:, ~mask] == x[:, ~mask]).all()

    out = RandomErasing(1.0, mode="rand")(x, rng=0)
    mask = (out != x).any(0)
    _single_rectangle(mask)
    colours = out[:, mask]
    assert (colours == colours[:, :1]).all() and len(set(colours[:, 0].tolist())) == 3  # one colour per channel

    out = RandomErasing(1.0, mode="pixel")(x, rng=0)
    mask = (out != x).any(0)
    assert np.unique(out[0, mask]).size == mask.sum()  # independent noise per pixel
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(1.0, mode="zeros")


def test_random_erasing_count_batch_and_seed():
    x = np.full((4, 3, 64, 64), 5.0, np.float32)
    erase = RandomErasing(1.0, mode="const", count=3)
    out = erase(x, rng=7)
    np.testing.assert_array_equal(out, erase(x, rng=7))
    masks = (out != x).any(1)
    assert all(m.any() for m in masks)
    assert len({m.tobytes() for m in masks}) == 4  # every image draws its own rectangles
    # k ~ U{1..3} rectangles of area U(min, max)/k each: the total never exceeds max_area (beyond rounding)
    totals = [(erase(x[0], rng=s) != x[0]).any(0).mean() for s in range(60)]
    assert max(totals) <= (1 / 3) * 1.15


# ------------------------------------------------------------------------------------------------ mixup / cutmix


def _batch(b=4, c=3, h=16, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, c, h, w)).astype(np.float32), rng.permutation(10)[:b].astype(np.int64)


def test_cutmix_target_equals_pasted_fraction():
    x, y = _batch()
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    fractions = []
    for seed in range(12):
        mixed, target = mix(x, y, rng=seed)
        np.testing.assert_allclose(target.sum(1), 1.0, atol=1e-6)
        flipped = x[::-1]
        for i in range(len(x)):
            from_flip = (mixed[i] == flipped[i]).all(0)
            from_self = (mixed[i] == x[i]).all(0)
            assert (from_flip | from_self).all()  # every pixel comes from one of the two sources
            if from_flip.any():
                _single_rectangle(from_flip)
            assert target[i, y[::-1][i]] == pytest.approx(from_flip.mean(), abs=1e-6)
            assert target[i, y[i]] == pytest.approx(1 - from_flip.mean(), abs=1e-6)
        fractions.append(from_flip.mean())
    assert np.ptp(fractions) > 0.2  # lambda really is drawn


def test_mixup_images_follow_lam_implied_by_targets():
    x, y = _batch()
    smoothing, classes = 0.1, 10
    off, on = smoothing / classes, 1 - smoothing + smoothing / classes
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=smoothing, num_classes=classes)
    lams = []
    for seed in range(10):
        mixed, target = mix(x, y, rng=seed)
        lam = (target[0, y[0]] - off) / (on - off)
        np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], atol=1e-5)
        np.testing.assert_allclose(target, mixup_target(y, classes, lam, smoothing), atol=1e-6)
        np.testing.assert_allclose(target.sum(1), 1.0, atol=1e-6)
        lams.append(lam)
    assert 0 < min(lams) and max(lams) < 1 and np.ptp(lams) > 0.2


def test_label_smoothing_exact_and_prob_zero_untouched():
    x, y = _batch()
    mix = Mixup(prob=0.0, label_smoothing=0.1, num_classes=10)
    mixed, target = mix(x, y, rng=0)
    np.testing.assert_array_equal(mixed, x)
    expected = np.full((4, 10), np.float32(0.01), np.float32)
    expected[np.arange(4), y] = np.float32(0.91)
    np.testing.assert_allclose(target, expected, rtol=0, atol=1e-7)
    mixed, target = Mixup(prob=1.0, label_smoothing=0.0, num_classes=10)(x, y, rng=0)
    assert set(np.unique(target).round(6)) != {0.0, 1.0}  # mixing happened, and x is left untouched
    np.testing.assert_array_equal(x, _batch()[0])


def test_switch_prob_selects_mixup_or_cutmix():
    x, y = _batch()
    only_mixup = Mixup(switch_prob=0.0, label_smoothing=0.0, num_classes=10)
    only_cutmix = Mixup(switch_prob=1.0, label_smoothing=0.0, num_classes=10)
    for seed in range(10):
        mixed, target = only_mixup(x, y, rng=seed)
        lam = target[0, y[0]]
        np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], atol=1e-5)
        mixed, _ = only_cutmix(x, y, rng=seed)
        assert ((mixed == x).all(1) | (mixed == x[::-1]).all(1)).all()


def test_mixup_target_matches_timm():
    import_timm()
    import torch
    from timm.data.mixup import mixup_target as timm_mixup_target

    y = np.array([3, 0, 7, 7, 1, 9], np.int64)
    for lam, smoothing in ((1.0, 0.1), (0.37, 0.1), (0.8, 0.0)):
        ref = timm_mixup_target(torch.from_numpy(y), 10, lam, smoothing).numpy()
        np.testing.assert_allclose(mixup_target(y, 10, lam, smoothing), ref, atol=1e-7)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_matches_timm_under_global_seed(mode):
    """With rng=None our Mixup consumes numpy's global RNG in timm's order: same seed, same batch and targets."""
    import_timm()
    import torch
    from timm.data.mixup import Mixup as TimmMixup

    x, y = _batch(b=6, h=24, w=24)
    kwargs = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.9, switch_prob=0.5, mode=mode, label_smoothing=0.1,
                  num_classes=10)
    ours, ref = Mixup(**kwargs), TimmMixup(**kwargs)
    used_cutmix = used_mixup = False
    for seed in range(8):
        np.random.seed(seed)
        ref_x, ref_t = ref(torch.from_numpy(x.copy()), torch.from_numpy(y))
        np.random.seed(seed)
        mixed, target = ours(x, y)
        np.testing.assert_allclose(mixed, ref_x.numpy(), atol=1e-6)
        np.testing.assert_allclose(target, ref_t.numpy(), atol=1e-6)
        exact = (mixed == x).all(1) | (mixed == x[::-1]).all(1)
        used_cutmix |= bool(exact.all() and not np.array_equal(mixed, x))
        used_mixup |= bool(not exact.all())
    assert used_mixup and (used_cutmix or mode != "batch")


def test_mixup_odd_batch_and_cutmix_minmax():
    x, y = _batch(b=5)
    for mode in ("batch", "pair", "elem"):
        mixed, target = Mixup(mode=mode, num_classes=10)(x, y, rng=1)
        np.testing.assert_allclose(mixed[2], x[2], atol=1e-6)  # the middle sample is its own mirror
        np.testing.assert_allclose(target[2], mixup_target(y, 10, 1.0, 0.1)[2], atol=1e-6)
        np.testing.assert_allclose(target.sum(1), 1.0, atol=1e-6)
    mix = Mixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.6), label_smoothing=0.0, num_classes=10)
    for seed in range(5):
        mixed, target = mix(x, y, rng=seed)
        pasted = (mixed[0] == x[4]).all(0) & (x[0] != x[4]).all(0)
        h, w = _single_rectangle(pasted)
        assert 0.3 * 16 - 1 <= h <= 0.6 * 16 and 0.3 * 20 - 1 <= w <= 0.6 * 20
        assert target[0, y[4]] == pytest.approx(pasted.mean(), abs=1e-6)


def test_mixup_rejects_bad_input():
    x, y = _batch()
    with pytest.raises(ValueError, match="labels"):
        Mixup(num_classes=5)(x, y + 5)
    with pytest.raises(ValueError, match="B, C, H, W"):
        Mixup(num_classes=10)(x[0], y)
    with pytest.raises(ValueError, match="alpha"):
        Mixup(mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="mode"):
        Mixup(mode="sample")


# ------------------------------------------------------------------------------------------------ pipelines


def test_colour_jitter_only_without_randaugment():
    with_ra = build_train_transform(32, color_jitter=0.4, reprob=0.25)
    assert with_ra.stage_names == ["random_resized_crop", "hflip", "rand_augment", "normalize", "random_erasing"]
    assert with_ra.stage("color_jitter") is None
    assert isinstance(with_ra.stage("rand_augment"), RandAugment)
    assert with_ra.stage("rand_augment").resample == Image.BICUBIC  # fixed train interpolation reaches RA
    erasing = with_ra.stage("random_erasing")
    assert erasing.probability == 0.25 and erasing.mode == "pixel" and erasing.count == 1

    without_ra = build_train_transform(32, auto_augment=None, color_jitter=0.4)
    assert without_ra.stage_names == ["random_resized_crop", "hflip", "color_jitter", "normalize"]
    ranges = without_ra.stage("color_jitter").ranges
    assert ranges[:3] == ((0.6, 1.4),) * 3 and ranges[3] is None
    assert build_train_transform(32, auto_augment=None, color_jitter=None).stage_names == [
        "random_resized_crop", "hflip", "normalize"]


def test_stage_layout_matches_timm_create_transform():
    import_timm()
    from timm.data import create_transform

    names = {"RandomResizedCropAndInterpolation": "random_resized_crop", "RandomHorizontalFlip": "hflip",
             "RandAugment": "rand_augment", "ColorJitter": "color_jitter", "Normalize": "normalize",
             "RandomErasing": "random_erasing"}
    for auto_augment in ("rand-m9-mstd0.5-inc1", None):
        ref = create_transform(32, is_training=True, auto_augment=auto_augment, color_jitter=0.4, re_prob=0.25,
                               re_mode="pixel", interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD)
        ref_names = [names[type(t).__name__] for t in ref.transforms if type(t).__name__ in names]
        ours = build_train_transform(32, auto_augment=auto_augment, color_jitter=0.4, reprob=0.25)
        assert ours.stage_names == ref_names
        if auto_augment:
            ref_ra = next(t for t in ref.transforms if type(t).__name__ == "RandAugment")
            assert ref_ra.ops[0].kwargs["fillcolor"] == ours.stage("rand_augment").fill
            assert ref_ra.ops[0].kwargs["resample"] == ours.stage("rand_augment").resample


def test_colour_jitter_factor_ranges():
    gray = Image.new("RGB", (8, 8), (100, 100, 100))
    jitter = ColorJitter(brightness=0.4)
    factors = [np.asarray(jitter(gray, rng=s))[0, 0, 0] / 100 for s in range(200)]
    assert 0.6 - 0.01 <= min(factors) < 0.7 and 1.3 < max(factors) <= 1.4 + 0.01
    colourful = structured_image(16, 16)
    saturation_only = ColorJitter(saturation=(0.0, 0.0 + 1e-9))  # ~0: grayscale
    out = np.asarray(saturation_only(colourful, rng=0)).astype(int)
    assert np.abs(out - out[..., :1]).max() <= 1


def test_train_transform_normalisation_of_mid_gray():
    plain = build_train_transform(24, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, auto_augment=None,
                                  color_jitter=None, reprob=0.0)
    out = plain(Image.new("RGB", (40, 30), (128, 128, 128)), rng=0)
    assert out.shape == (3, 24, 24) and out.dtype == np.float32
    expected = (128 / 255 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    np.testing.assert_allclose(out, np.broadcast_to(expected.reshape(3, 1, 1), out.shape), atol=1e-5)


def test_train_transform_full_recipe_is_seeded():
    img = structured_image(64, 48)
    transform = build_train_transform(32, reprob=0.25)
    assert isinstance(transform, TrainTransform)
    first = transform(img, rng=np.random.default_rng(0))
    assert first.shape == (3, 32, 32) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, transform(img, rng=np.random.default_rng(0)))
    np.testing.assert_array_equal(first, transform(img, rng=0))
    others = {transform(img, rng=s).tobytes() for s in range(1, 9)}
    assert len(others) == 8 and first.tobytes() not in others
    arr = np.asarray(img)  # HWC uint8 arrays are accepted too
    np.testing.assert_array_equal(transform(arr, rng=5), transform(img, rng=5))


def test_eval_transform():
    transform = build_eval_transform(32, crop_pct=0.875)
    assert isinstance(transform, EvalTransform)
    out = transform(structured_image(64, 48))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    with pytest.raises(ValueError, match="interpolation"):
        build_eval_transform(32, interpolation="random")
