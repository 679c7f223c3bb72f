from typing import Optional

from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from ..image_io import (JPEG_REDUCTIONS, MAX_IMAGE_PIXELS, decode_image, probe_image,
                        read_image_bytes)


@TRANSFORMS.register_module()
class BioLoadImage(BaseTransform):
    """Load ``results['img_path']`` as an upright 3-channel BGR ``uint8`` image.

    Grayscale, RGBA, palette, 16-bit and CMYK files are converted, EXIF orientation is
    applied, and unreadable files (zero-byte, not an image, truncated, corrupt, more than
    ``max_pixels``) raise :class:`~bioplugin.datasets.image_io.BadImageError`, which
    ``BioDataset`` logs and skips. ``min_size`` lets libjpeg decode a large JPEG at 1/2, 1/4
    or 1/8 size while its shorter side stays at least ``min_size``; ``decode=False`` only
    reads the bytes and the header (``img_bytes``, ``img_header``) for a transform that
    decodes at the size it needs, such as ``BioRandomResizedAffine``::

        test_pipeline = [dict(type='BioLoadImage', min_size=256), ...]
        train_pipeline = [dict(type='BioLoadImage', decode=False),
                          dict(type='BioRandomResizedAffine', scale=224), ...]
    """

    def __init__(self, decode: bool = True, min_size: Optional[int] = None,
                 max_pixels: int = MAX_IMAGE_PIXELS, backend_args: Optional[dict] = None):
        self.decode = decode
        self.min_size = min_size
        self.max_pixels = max_pixels
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        data = read_image_bytes(path, self.backend_args)
        header = probe_image(data, path, self.max_pixels)
        results['ori_shape'] = (header.height, header.width)
        if not self.decode:
            results.update(img_bytes=data, img_header=header,
                           img_shape=(header.height, header.width))
            return results
        img = decode_image(data, path, self.reduction(header))
        results.update(img=img, img_shape=img.shape[:2])
        return results

    def reduction(self, header) -> int:
        """The largest JPEG reduction that keeps the shorter side at least ``min_size``."""
        if not self.min_size or header.format != 'JPEG':
            return 1
        short_side = min(header.width, header.height)
        return max(r for r in JPEG_REDUCTIONS if r == 1 or short_side / r >= self.min_size)

    def __repr__(self):
        return (f'{self.__class__.__name__}(decode={self.decode}, min_size={self.min_size}, '
                f'max_pixels={self.max_pixels})')
