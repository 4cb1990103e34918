"""Every entry point reads every kind of image the same, correct way (`paddlemix_eva/data/images.py`): 16-bit grey
scaled, not clipped; transparency on white; palette, CMYK, 1-bit and grey converted; EXIF orientation applied;
other modes refused with the file named; corrupt files still reported and skipped by the datasets."""
import logging
import tarfile

import numpy as np
import paddle
import pytest
from PIL import Image

from paddlemix_eva.data.datasets import ImageFolder, open_rgb
from paddlemix_eva.data.images import read_rgb, read_rgb_or_none
from paddlemix_eva.data.shards import decode_rgb
from paddlemix_eva.data.transforms import load_image
from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.tasks.inference import extract_features, inference_model

#: 16-bit values and their 8-bit values by round(x / 257), worked out by hand: 128/257 = 0.498, 129/257 = 0.502,
#: 32896 = 128 * 257, 65407/257 = 254.502
SIXTEEN_TO_EIGHT = {0: 0, 128: 0, 129: 1, 257: 1, 1000: 4, 32896: 128, 65407: 255, 65535: 255}
#: six 8x8 blocks of distinct colours, 2 rows x 3 columns: every rotation and flip of it is distinguishable
BLOCK_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def sixteen_bit_grey() -> np.ndarray:
    """A 16-bit gradient over the whole range plus the hand-checked values."""
    gradient = np.linspace(0, 65535, 64 * 8).round().astype(np.uint16).reshape(8, 64)
    known = np.array(list(SIXTEEN_TO_EIGHT) * 8, np.uint16).reshape(8, -1)
    return np.concatenate([gradient, known], axis=1)


def expected_eight_bit(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) / 257.0).astype(np.uint8)


def asymmetric_rgb() -> np.ndarray:
    pixels = np.zeros((16, 24, 3), np.uint8)
    for i, colour in enumerate(BLOCK_COLOURS):
        row, col = divmod(i, 3)
        pixels[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = colour
    return pixels


def upright(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What the viewer should see of `stored` pixels, from the EXIF spec's meaning of each orientation (where
    the stored 0th row and 0th column lie in the visual image)."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # row 0 top, column 0 right
        3: lambda a: a[::-1, ::-1],  # row 0 bottom, column 0 right
        4: lambda a: a[::-1, :],  # row 0 bottom, column 0 left
        5: lambda a: a.transpose(1, 0, 2),  # row 0 left, column 0 top
        6: lambda a: np.rot90(a, -1),  # row 0 right, column 0 top: turn clockwise
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # row 0 right, column 0 bottom
        8: lambda a: np.rot90(a, 1),  # row 0 left, column 0 bottom: turn anticlockwise
    }[orientation](stored)


def save_with_orientation(pixels: np.ndarray, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"quality": 95, "subsampling": 0} if str(path).endswith(".jpg") else {}
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **extra)


def as_array(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


# ------------------------------------------------------------------------------------------ 16-bit
def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = sixteen_bit_grey()
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")  # PIL really opens it as 16-bit
    rgb = as_array(read_rgb(str(path)))
    expected = expected_eight_bit(values)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected)
    for value, eight in SIXTEEN_TO_EIGHT.items():
        column = 64 + list(SIXTEEN_TO_EIGHT).index(value)
        assert rgb[0, column, 0] == eight, value
    assert 120 < rgb.mean() < 135  # what was reported: a mean of 254.7


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_every_sixteen_bit_mode_from_tiff_and_pil(tmp_path, mode):
    values = sixteen_bit_grey()
    if mode == "I":
        img = Image.fromarray(values.astype(np.int32))
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        img = Image.frombytes(mode, (values.shape[1], values.shape[0]), values.astype(dtype).tobytes())
    assert img.mode == mode
    expected = np.repeat(expected_eight_bit(values)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(as_array(read_rgb(img)), expected)
    path = tmp_path / "grey.tif"
    img.save(path)
    np.testing.assert_array_equal(as_array(read_rgb(path)), expected)


def test_sixteen_bit_transparent_grey_is_white(tmp_path):
    values = np.array([[0, 1000], [32896, 65535]], np.uint16)
    path = tmp_path / "trns16.png"
    Image.fromarray(values).save(path, transparency=1000)
    np.testing.assert_array_equal(as_array(read_rgb(path))[:, :, 0], [[0, 255], [128, 255]])


def test_uint16_and_uint8_arrays(tmp_path):
    values = sixteen_bit_grey()
    np.testing.assert_array_equal(as_array(load_image(values))[:, :, 1], expected_eight_bit(values))
    colour = np.stack([values, values[:, ::-1], values // 2], axis=-1)
    np.testing.assert_array_equal(as_array(load_image(colour)), expected_eight_bit(colour))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # the rest is fully transparent
    np.testing.assert_array_equal(as_array(load_image(rgba)), [[(10, 20, 30), (255,) * 3], [(255,) * 3] * 2])
    with pytest.raises(ValueError, match="uint8 .* or uint16 .* got dtype float32"):
        load_image(np.zeros((4, 4, 3), np.float32))


def test_integer_image_beyond_sixteen_bits_is_refused(tmp_path):
    path = tmp_path / "counts.tif"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(path)
    with pytest.raises(ValueError, match=f"{path}: .*values 0..70000 outside the 16-bit range"):
        read_rgb(path)


# ------------------------------------------------------------------------------------------ palette, alpha, CMYK, 1-bit
def palette_image() -> Image.Image:
    img = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], np.uint8), "L").convert("P")
    img.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200])
    return img


def test_palette_with_and_without_transparency(tmp_path):
    red, green, blue = (200, 10, 10), (10, 200, 10), (10, 10, 200)
    plain, transparent = tmp_path / "plain.png", tmp_path / "transparent.png"
    palette_image().save(plain)
    palette_image().save(transparent, transparency=1)  # green is the transparent entry
    with Image.open(transparent) as img:
        assert img.mode == "P" and img.info["transparency"] == 1
    np.testing.assert_array_equal(as_array(read_rgb(plain)), [[red, green, blue], [blue, green, red]])
    white = (255, 255, 255)
    np.testing.assert_array_equal(as_array(read_rgb(transparent)), [[red, white, blue], [blue, white, red]])
    palette_alpha = palette_image().convert("PA")
    palette_alpha.putalpha(Image.fromarray(np.array([[255, 0, 255], [255, 255, 0]], np.uint8)))
    np.testing.assert_array_equal(as_array(read_rgb(palette_alpha)), [[red, white, blue], [blue, green, white]])


def test_grey_and_colour_alpha_are_composited_on_white(tmp_path):
    grey = np.array([[60, 60, 60]], np.uint8)
    alpha = np.array([[255, 0, 128]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(np.stack([grey, alpha], axis=-1), "LA").save(path)
    with Image.open(path) as img:
        assert img.mode == "LA"
    out = as_array(read_rgb(path))[0, :, 0].astype(int)
    half = 60 * 128 / 255 + 255 * (1 - 128 / 255)  # 157.9: alpha blending onto white
    assert out[0] == 60 and out[1] == 255 and abs(out[2] - half) <= 1
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (30, 90, 150)
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent over black
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = as_array(read_rgb(path))
    assert (out[:4] == (30, 90, 150)).all() and (out[4:] == 255).all()


def test_cmyk_tiff_and_jpeg(tmp_path):
    pixels = asymmetric_rgb()
    cmyk = Image.fromarray(pixels).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    for name in ("cmyk.tif", "cmyk.jpg"):
        with Image.open(tmp_path / name) as img:
            assert img.mode == "CMYK"
    np.testing.assert_array_equal(as_array(read_rgb(tmp_path / "cmyk.tif")), pixels)
    np.testing.assert_allclose(as_array(read_rgb(tmp_path / "cmyk.jpg")), pixels, atol=6)


def test_one_bit_and_grey(tmp_path):
    bits = np.array([[0, 255, 0], [255, 0, 255]], np.uint8)
    Image.fromarray(bits, "L").convert("1").save(tmp_path / "bits.png")
    Image.fromarray(bits // 3, "L").save(tmp_path / "grey.png")
    with Image.open(tmp_path / "bits.png") as img:
        assert img.mode == "1"
    np.testing.assert_array_equal(as_array(read_rgb(tmp_path / "bits.png"))[:, :, 2], bits)
    np.testing.assert_array_equal(as_array(read_rgb(tmp_path / "grey.png"))[:, :, 0], bits // 3)


# ------------------------------------------------------------------------------------------ EXIF orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(tmp_path, orientation):
    stored = asymmetric_rgb()
    path = tmp_path / f"o{orientation}.png"
    save_with_orientation(stored, path, orientation)
    np.testing.assert_array_equal(as_array(read_rgb(path)), upright(stored, orientation))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_photo(tmp_path, orientation):
    stored = asymmetric_rgb()
    path = tmp_path / "photo.jpg"
    save_with_orientation(stored, path, orientation)
    expected = upright(stored, orientation)
    for decoded in (read_rgb(path), open_rgb(str(path)), load_image(str(path)), decode_rgb(path.read_bytes())):
        out = as_array(decoded)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=8)  # JPEG noise; a wrong rotation is off by 255
    with Image.open(path) as opened:  # an opened PIL image is turned upright too
        np.testing.assert_allclose(as_array(read_rgb(opened)), expected, atol=8)


# ------------------------------------------------------------------------------------------ refused and corrupt
def test_float_tiff_is_refused_with_the_file_mode_and_what_is_supported(tmp_path, caplog):
    path = tmp_path / "depth.tif"
    Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)).save(path)
    with pytest.raises(ValueError) as err:
        read_rgb(str(path))
    message = str(err.value)
    assert str(path) in message and "'F'" in message and "32-bit float" in message and "16-bit grey" in message
    with caplog.at_level(logging.WARNING):
        assert read_rgb_or_none(str(path)) is None
    assert str(path) in caplog.text and "'F'" in caplog.text


def test_corrupt_file_is_still_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    with caplog.at_level(logging.WARNING):
        assert open_rgb(str(path)) is None
        assert open_rgb(str(tmp_path / "missing.png")) is None
    assert f"skipping unreadable image {path}" in caplog.text and "missing.png" in caplog.text


# ------------------------------------------------------------------------------------------ through the entry points
def test_image_folder_reads_each_kind_and_skips_the_bad(tmp_path, caplog):
    values = sixteen_bit_grey()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(values).save(tmp_path / "a" / "grey16.png")
    save_with_orientation(asymmetric_rgb(), tmp_path / "a" / "phone.png", 6)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "b" / "float.tif")
    dataset = ImageFolder(str(tmp_path))
    assert [path.split("/")[-1] for path, _ in dataset.samples] == ["grey16.png", "phone.png", "broken.png",
                                                                    "float.tif"]
    grey, label = dataset[0]
    assert label == 0
    np.testing.assert_array_equal(as_array(grey)[:, :, 0], expected_eight_bit(values))
    np.testing.assert_array_equal(as_array(dataset[1][0]), upright(asymmetric_rgb(), 6))
    with caplog.at_level(logging.WARNING):
        assert dataset[2] is None and dataset[3] is None
    assert "broken.png" in caplog.text and "float.tif" in caplog.text


def test_shard_members_decode_the_same_way(tmp_path):
    values = sixteen_bit_grey()
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(path, arcname="000.png")
    with tarfile.open(tar_path) as tar:
        data = tar.extractfile("000.png").read()
    np.testing.assert_array_equal(as_array(decode_rgb(data))[:, :, 0], expected_eight_bit(values))


def test_predict_and_features_see_the_decoded_image(tmp_path, tiny_eva02_config):
    """End to end through the Python API of `paddlemix-eva predict` / `features`: a 16-bit file gives what its
    8-bit equivalent gives, an EXIF-rotated photo what the upright photo gives (not what its stored pixels give),
    a float TIFF an error naming it."""
    model = EVA02VisionTransformer(tiny_eva02_config).eval()
    with paddle.no_grad():  # a spread-out head, so that different inputs give clearly different scores
        model.head.weight.set_value(model.head.weight * 50.0)
    rng = np.random.default_rng(3)
    values = (rng.random((40, 64)) * 65535).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    Image.fromarray(expected_eight_bit(values)).save(tmp_path / "grey8.png")
    stored = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    save_with_orientation(stored, tmp_path / "phone.png", 6)
    Image.fromarray(np.ascontiguousarray(upright(stored, 6))).save(tmp_path / "upright.png")
    Image.fromarray(stored).save(tmp_path / "stored.png")
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "float.tif")
    paths = [str(tmp_path / name) for name in ("grey16.png", "grey8.png", "phone.png", "upright.png", "stored.png",
                                               "float.tif")]

    results = inference_model(model, paths, topk=10)
    scores = [np.array([score for _, score, _ in sorted(r["topk"])]) for r in results[:5]]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores[2], scores[3], rtol=1e-6, atol=1e-7)
    assert np.abs(scores[2] - scores[4]).max() > 1e-4
    assert str(tmp_path / "float.tif") in results[5]["error"] and "'F'" in results[5]["error"]

    features, errors = extract_features(model, paths)
    assert features.shape[0] == 5 and errors[:5] == [None] * 5 and "float.tif" in errors[5]
    np.testing.assert_allclose(features[0], features[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features[2], features[3], rtol=1e-5, atol=1e-6)
    assert np.abs(features[2] - features[4]).max() > 1e-2
    with pytest.raises(ValueError, match="float.tif: image mode 'F'"):
        inference_model(model, paths[5])
