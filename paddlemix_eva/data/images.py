"""Image reading for every entry point: one place that turns a file, encoded bytes, a PIL image or an array into
the upright 8-bit RGB image the models expect.

`Image.open(...).convert("RGB")` alone gets several kinds of file wrong without a word: a 16-bit greyscale PNG
is clipped to 255 (a nearly white image), transparent pixels take whatever colour the file stores under them
(often black), and a phone photo's EXIF orientation is ignored (the model sees it on its side). Here:

- EXIF orientation (all 8 values) is applied first (`PIL.ImageOps.exif_transpose`); unreadable EXIF is ignored
  with a warning rather than losing the image.
- Transparency (an alpha band, a palette with transparent entries, a PNG transparent colour) is composited onto
  a white background, as Hugging Face's image processors do.
- 16-bit greyscale (modes I;16, I;16L, I;16B, I;16N, and I with values 0..65535) is scaled to 8 bits by
  round(x / 257), so 65535 -> 255 and the full range is kept. 16-bit RGB(A) PNGs are reduced to 8 bits by PIL
  itself when it opens them (the high byte).
- 1-bit, greyscale, palette, RGB, CMYK and YCbCr images are converted to RGB by PIL.
- Animated or multi-page files give their first frame.
- Any other mode (e.g. 32-bit float 'F' TIFFs, LAB) is refused with a ValueError naming the file, its mode and
  what is supported, rather than being guessed at.
"""
from __future__ import annotations

import io
import logging
import os
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

#: modes converted by PIL as they are (unless the image declares a transparent colour)
_PLAIN_MODES = ("1", "L", "RGB", "RGBX", "CMYK", "YCbCr")
#: modes that carry (or, for a palette, may carry) transparency: composited onto white
_ALPHA_MODES = ("LA", "La", "P", "PA", "RGBA", "RGBa")
#: 16-bit greyscale; "I" (32-bit int) is how PIL opens 16-bit PNGs on some versions and is read as 16-bit
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: every mode `read_rgb` accepts
SUPPORTED_MODES = _PLAIN_MODES + _ALPHA_MODES + _SIXTEEN_BIT_MODES
#: the errors an unreadable, corrupt or unsupported image raises (what the lenient readers catch)
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

_SUPPORTED_TEXT = ("1-bit, 8-bit grey, palette, RGB, CMYK or YCbCr, each with or without transparency, and 16-bit "
                   f"grey (PIL modes {', '.join(SUPPORTED_MODES)})")
_MODE_NAMES = {"F": "32-bit float", "I;32": "32-bit integer", "I;16S": "signed 16-bit", "LAB": "CIE L*a*b*",
               "HSV": "HSV"}
_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255, 255)


def read_rgb(image: ImageSource, name: Optional[str] = None) -> Image.Image:
    """The image as an upright 8-bit RGB PIL image (see the module docstring for how each kind is read:
    EXIF orientation applied, transparency on white, 16-bit grey scaled by 1/257).

    `image` is a path, encoded bytes (a tar shard member), a PIL image or an HxW / HxWxC (C = 1..4) uint8 or
    uint16 array. `name` says what the image is in error messages (default: the path, or a description).
    Raises FileNotFoundError, OSError / UnidentifiedImageError for an unreadable file, and ValueError naming the
    image for one of an unsupported kind. An already upright RGB PIL image is returned as it is.
    """
    if isinstance(image, Image.Image):
        return _to_rgb(image, name or getattr(image, "filename", "") or "PIL image")
    if isinstance(image, np.ndarray):
        return _to_rgb(_from_array(image, name or f"image array{list(image.shape)}"), name or "image array")
    if isinstance(image, (bytes, bytearray, memoryview)):
        source, name = io.BytesIO(bytes(image)), name or "image bytes"
    elif isinstance(image, (str, os.PathLike)):
        source, name = os.fspath(image), name or os.fspath(image)
    else:
        raise TypeError(f"expected an image path, bytes, PIL image or numpy array, got {type(image).__name__}")
    with Image.open(source) as img:
        img.load()
        rgb = _to_rgb(img, name)
        return rgb.copy() if rgb is img else rgb


def read_rgb_or_none(image: ImageSource, name: Optional[str] = None) -> Optional[Image.Image]:
    """`read_rgb`, but an image that is missing, corrupt or of an unsupported kind gives None and a warning that
    names it: what datasets use, so that one bad file never ends a long run."""
    label = name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else None)
    try:
        return read_rgb(image, name)
    except READ_ERRORS as err:
        message = str(err)
        if label and label in message:
            logger.warning("skipping unreadable image: %s", message)
        else:
            logger.warning("skipping unreadable image %s (%s)", label or "", message)
        return None


def _upright(img: Image.Image, name: str) -> Image.Image:
    """The image with its EXIF orientation applied (itself when it has none)."""
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except Exception as err:  # PIL's EXIF parser raises many kinds of error on malformed metadata
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, err)
    return img


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    mode = img.mode
    if mode not in SUPPORTED_MODES:
        kind = f" ({_MODE_NAMES[mode]})" if mode in _MODE_NAMES else ""
        raise ValueError(f"{name}: image mode {mode!r}{kind} is not supported; readable kinds: {_SUPPORTED_TEXT}")
    img = _upright(img, name)
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_grey_to_rgb(img, name)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return img if mode == "RGB" else img.convert("RGB")


def _sixteen_bit_grey_to_rgb(img: Image.Image, name: str) -> Image.Image:
    """16-bit grey -> 8-bit RGB by round(x / 257) (exact: x / 257 is never halfway between integers); pixels of
    a declared transparent grey level become white."""
    values = np.asarray(img).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{name}: integer image (mode {img.mode!r}) with values {values.min()}..{values.max()} "
                         "outside the 16-bit range 0..65535; readable kinds: " + _SUPPORTED_TEXT)
    grey = ((2 * values + 257) // 514).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        rgb[values == transparent] = 255
    return Image.fromarray(rgb, "RGB")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """A PIL image of an HxW or HxWxC (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) uint8 or uint16 array; uint16 is
    scaled by round(x / 257) like 16-bit files."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"{name}: expected an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 image array, got shape "
                         f"{array.shape}")
    if array.dtype == np.uint16:
        array = ((2 * array.astype(np.int64) + 257) // 514).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"{name}: expected a uint8 (0..255) or uint16 (0..65535) image array, got dtype "
                         f"{array.dtype}")
    mode = "L" if array.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(array), mode)
