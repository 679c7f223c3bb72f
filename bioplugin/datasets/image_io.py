"""Read image files the way training, prediction and the dataset doctor all see them.

Every image becomes an upright 3-channel BGR ``uint8`` array: OpenCV applies the EXIF
orientation and converts grayscale, RGBA (alpha dropped), palette, 16-bit and CMYK files.
What cannot be read raises :class:`BadImageError` with the file and the reason: zero-byte,
not an image, truncated or corrupt, or a decompression bomb (more than ``max_pixels``,
checked from the header before anything is decoded).
"""
import io
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from mmengine import fileio
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError

# PIL's own hard limit (2 × Image.MAX_IMAGE_PIXELS): about 13,400 × 13,400 pixels.
MAX_IMAGE_PIXELS = 178_956_970

# libjpeg can decode JPEGs at 1/2, 1/4 and 1/8 size directly.
JPEG_REDUCTIONS = (1, 2, 4, 8)
_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# EXIF orientations 5-8 turn the image by 90 degrees: width and height swap.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_FORMATS = ('JPEG', 'MPO', 'TIFF', 'WEBP')


class BadImageError(DatasetError):
    """An image file that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says: upright size, PIL format and mode, EXIF orientation."""
    width: int
    height: int
    format: str
    mode: str
    orientation: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_image_bytes(path: str, backend_args: Optional[dict] = None) -> bytes:
    """The file's bytes (any MMEngine file backend); zero-byte and unreadable files refused."""
    try:
        data = fileio.get(path, backend_args=backend_args)
    except (OSError, ValueError) as error:
        raise BadImageError(path, f'cannot be read ({error.__class__.__name__}: {error})') from None
    if not data:
        raise BadImageError(path, 'zero-byte file')
    return data


def probe_image(data: bytes, path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageHeader:
    """Read the header only; refuse non-images and images above ``max_pixels``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:  # before anything below can decode pixels
                raise BadImageError(
                    path, f'decompression bomb: {width} x {height} = {width * height:,} '
                    f'pixels exceeds the limit of {max_pixels:,}')
            # getexif() decodes a PNG in full: only read it where EXIF orientation lives
            orientation = (int(image.getexif().get(0x0112, 1) or 1)
                           if image.format in _EXIF_FORMATS else 1)
            header = ImageHeader(width, height, image.format or '', image.mode, orientation)
    except BadImageError:
        raise
    except Image.DecompressionBombError:
        raise BadImageError(path, 'decompression bomb: too many pixels to decode safely') from None
    except UnidentifiedImageError:
        raise BadImageError(path, 'not an image file (unknown format)') from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(path, f'unreadable image header ({error})') from None
    if header.orientation in _TRANSPOSED_ORIENTATIONS:
        header = ImageHeader(height, width, header.format, header.mode, header.orientation)
    return header


def decode_image(data: bytes, path: str, reduction: int = 1) -> np.ndarray:
    """Decode to an upright BGR ``uint8`` array of shape ``(H, W, 3)``.

    ``reduction`` 2, 4 or 8 decodes at that fraction of the size (``ceil(W / r)``); JPEGs do
    it inside libjpeg, which is much faster than decoding the full image.
    """
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f'reduction must be one of {JPEG_REDUCTIONS}, got {reduction}')
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_FLAGS[reduction])
    if image is None:
        raise BadImageError(path, 'corrupt or truncated image data (the decoder failed)')
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def load_image(path: str, max_pixels: int = MAX_IMAGE_PIXELS,
               backend_args: Optional[dict] = None) -> np.ndarray:
    """Read, check and decode one image file at full size."""
    data = read_image_bytes(path, backend_args)
    probe_image(data, path, max_pixels)
    return decode_image(data, path)

