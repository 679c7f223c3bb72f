import math
from numbers import Integral, Number

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS

from ..image_io import JPEG_REDUCTIONS, decode_image
from .random_affine import BioRandomAffine


def grid_map(ratio_x: float, ratio_y: float, left: float = 0., top: float = 0.) -> np.ndarray:
    """3×3 map from the pixels of a resampled grid to those of the grid it came from.

    A resampled pixel covers ``ratio`` source pixels and the resampled grid starts at source
    pixel ``(left, top)``; pixel centres sit at integers, as in ``cv2.resize``.
    """
    return np.array([[ratio_x, 0., left + 0.5 * ratio_x - 0.5],
                     [0., ratio_y, top + 0.5 * ratio_y - 0.5],
                     [0., 0., 1.]])


@TRANSFORMS.register_module()
class BioRandomResizedAffine(BaseTransform):
    """Random resized crop, horizontal flip, rotation, translation and scale in one warp.

    Samples like torchvision's ``RandomResizedCrop(scale, crop_ratio_range,
    aspect_ratio_range)`` → ``RandomHorizontalFlip(flip_prob)`` →
    ``RandomRotation(max_rotate_degree)`` → ``RandomAffine(0, translate, scaling_ratio_range)``
    (translation in output pixels, rotation and scale about the output centre), but composes
    the five maps into one matrix and resamples the source once, straight to the output size
    (``interpolation``). As with the separate steps, pixels from outside the crop, and those
    the rotation turned out of the frame, come out as ``border_value``. ``scale`` is the
    output size, an int or ``(h, w)`` as in MMPretrain's ``RandomResizedCrop``. Colour jitter
    is a separate transform (``BioColorJitter``)::

        dict(type='BioRandomResizedAffine', scale=224, crop_ratio_range=(0.7, 1.0),
             flip_prob=0.5, max_rotate_degree=20, max_translate_ratio=0.1,
             scaling_ratio_range=(0.9, 1.1))

    Large sources: given ``img_bytes`` and ``img_header`` instead of ``img`` (``BioLoadImage``
    with ``decode=False``), the parameters come from the header's size and a JPEG is decoded
    at the largest 1/2, 1/4 or 1/8 reduction that keeps at least one source pixel per output
    pixel. Only if more than 2 source pixels per output pixel remain (a huge PNG, or a
    decoded ``img``) is the region the output sees first shrunk by an integer factor with
    ``INTER_AREA`` to 1-2 pixels per output pixel, so that one bilinear warp does not alias.

    ``results['resized_affine_params']`` records what was sampled: ``crop``
    ``(left, top, w, h)`` in full-size source pixels, ``flip``, ``angle``, ``translate``,
    ``scale``, ``reduction``, ``pre_shrink`` (integer factor, 1 if none) and ``matrix``
    (2×3, full-size source → output pixels).
    """

    def __init__(self,
                 scale=224,
                 crop_ratio_range=(0.7, 1.0),
                 aspect_ratio_range=(3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 flip_prob: float = 0.5,
                 max_rotate_degree: float = 20.,
                 max_translate_ratio: float = 0.1,
                 scaling_ratio_range=(0.9, 1.1),
                 interpolation: str = 'bilinear',
                 border_value=(0, 0, 0)):
        out_h, out_w = (scale, scale) if isinstance(scale, Number) else tuple(scale)
        if not all(isinstance(n, Integral) and n > 0 for n in (out_h, out_w)):
            raise ValueError(f'scale must be a positive int or (h, w) of ints, got {scale}')
        if not 0 < crop_ratio_range[0] <= crop_ratio_range[1] <= 1:
            raise ValueError(f'crop_ratio_range must satisfy 0 < min <= max <= 1, '
                             f'got {crop_ratio_range}')
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f'aspect_ratio_range must satisfy 0 < min <= max, '
                             f'got {aspect_ratio_range}')
        if not (isinstance(max_attempts, int) and max_attempts >= 0):
            raise ValueError(f'max_attempts must be an int >= 0, got {max_attempts}')
        if not 0 <= flip_prob <= 1:
            raise ValueError(f'flip_prob must be in [0, 1], got {flip_prob}')
        if interpolation not in ('nearest', 'bilinear', 'bicubic'):
            raise ValueError(f"interpolation must be 'nearest', 'bilinear' or 'bicubic', "
                             f'got {interpolation!r}')
        if isinstance(border_value, Number):
            border_value = (border_value, ) * 3
        self.scale = (int(out_h), int(out_w))
        self.crop_ratio_range = tuple(crop_ratio_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_attempts = max_attempts
        self.flip_prob = flip_prob
        # rotation / translation / scale: validated, sampled and turned into a matrix there
        self._affine = BioRandomAffine(max_rotate_degree, max_translate_ratio,
                                      scaling_ratio_range, border_value, interpolation)

    def _rand_crop(self, width: int, height: int):
        """``(left, top, w, h)`` as torchvision's ``RandomResizedCrop.get_params`` draws it."""
        area = width * height
        log_ratio = (math.log(self.aspect_ratio_range[0]), math.log(self.aspect_ratio_range[1]))
        for _ in range(self.max_attempts):
            target_area = area * np.random.uniform(*self.crop_ratio_range)
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = np.random.randint(0, height - h + 1)
                left = np.random.randint(0, width - w + 1)
                return int(left), int(top), w, h
        # fallback: the whole image, centre-cropped to the aspect ratio range
        in_ratio = width / height
        w, h = width, height
        if in_ratio < self.aspect_ratio_range[0]:
            h = int(round(w / self.aspect_ratio_range[0]))
        elif in_ratio > self.aspect_ratio_range[1]:
            w = int(round(h * self.aspect_ratio_range[1]))
        return (width - w) // 2, (height - h) // 2, w, h

    @cache_randomness
    def rand_params(self, width: int, height: int) -> dict:
        """Crop, flip, angle, translation and scale for a ``width`` × ``height`` source."""
        crop = self._rand_crop(width, height)
        flip = bool(np.random.rand() < self.flip_prob)
        angle, shift, scale = self._affine._rand_params(self.scale[1], self.scale[0])
        return dict(crop=crop, flip=flip, angle=float(angle), translate=tuple(shift),
                    scale=float(scale))

    def matrix(self, params: dict) -> np.ndarray:
        """3×3 map from full-size source pixels to output pixels."""
        out_h, out_w = self.scale
        left, top, w, h = params['crop']
        crop_resize = np.linalg.inv(grid_map(w / out_w, h / out_h, left, top))
        flip = np.array([[-1., 0., out_w - 1], [0., 1., 0.], [0., 0., 1.]])
        rotate_shift_scale = np.vstack([
            self._affine.affine_matrix(out_w, out_h, params['angle'], params['translate'],
                                      params['scale']), [0., 0., 1.]])
        return rotate_shift_scale @ (flip if params['flip'] else np.eye(3)) @ crop_resize

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if img is None:
            header = results['img_header']
            width, height = header.width, header.height
        else:
            height, width = img.shape[:2]
        params = dict(self.rand_params(width, height))
        out_h, out_w = self.scale
        left, top, w, h = params['crop']
        full_matrix = self.matrix(params)
        # full-size source pixels per output pixel, along the crop's denser direction
        step = min(w / out_w, h / out_h) / params['scale']
        reduction = 1
        if img is None:
            if header.format in ('JPEG', 'MPO'):  # MPO: camera JPEG with extra frames
                reduction = max(r for r in JPEG_REDUCTIONS if r == 1 or step / r >= 1)
            img = self._decode(results, reduction, width, height)
        ratio_x, ratio_y = width / img.shape[1], height / img.shape[0]
        matrix = full_matrix @ grid_map(ratio_x, ratio_y)
        # the crop in array pixels: as with separate steps, nothing outside it is seen
        x0, y0 = round(left / ratio_x), round(top / ratio_y)
        box = (x0, y0, max(x0 + 1, round((left + w) / ratio_x)),
               max(y0 + 1, round((top + h) / ratio_y)))
        # a step above 2 aliases: shrink by an integer factor (INTER_AREA's fast path) to a
        # step in (1, 2], cutting out the part the output sees first, to whole blocks
        pre_shrink = math.ceil(step / ratio_x / 2) if step / ratio_x > 2 else 1
        if pre_shrink > 1:
            x0, y0, x1, y1 = self._visible_box(matrix, box, margin=2 * pre_shrink + 2)
            box = (x0, y0, x0 + (x1 - x0) // pre_shrink * pre_shrink,
                   y0 + (y1 - y0) // pre_shrink * pre_shrink)
        x0, y0, x1, y1 = box
        src = img[y0:y1, x0:x1]
        if pre_shrink > 1:
            size = ((x1 - x0) // pre_shrink, (y1 - y0) // pre_shrink)
            src = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        matrix = matrix @ grid_map((x1 - x0) / src.shape[1], (y1 - y0) / src.shape[0], x0, y0)
        img = cv2.warpAffine(src, matrix[:2], (out_w, out_h), flags=self._affine.interpolation,
                             borderMode=cv2.BORDER_CONSTANT,
                             borderValue=self._affine.border_value)
        self._clear_outside_frame(img, params)
        params.update(reduction=reduction, pre_shrink=pre_shrink, matrix=full_matrix[:2])
        results.update(img=img, img_shape=img.shape[:2], resized_affine_params=params)
        return results

    def _clear_outside_frame(self, img: np.ndarray, params: dict) -> None:
        """Fill what the translation and scale bring in from outside the rotated output frame.

        With separate steps the rotation's output is cut to ``scale``, so these rows and
        columns come out as ``border_value``; one warp from the source would fill them.
        """
        border = self._affine.border_value
        fill = border[:img.shape[2]] if img.ndim == 3 else border[0]
        for axis, size in enumerate(self.scale):  # rows, then columns
            centre, shift = (size - 1) * 0.5, params['translate'][1 - axis]
            low, high = (centre + shift + params['scale'] * (edge - centre)
                         for edge in (-0.5, size - 0.5))
            for cut in (slice(0, max(0, math.ceil(low))), slice(math.floor(high) + 1, size)):
                index = [slice(None), slice(None)]
                index[axis] = cut
                img[tuple(index)] = fill

    @staticmethod
    def _decode(results: dict, reduction: int, width: int, height: int) -> np.ndarray:
        """Decode ``results['img_bytes']`` (dropped) at 1 / ``reduction``, checked against
        the header's upright size."""
        path = results.get('img_path', '<img_bytes>')
        img = decode_image(results.pop('img_bytes'), path, reduction)
        if not all(0 <= n * reduction - full < reduction
                   for n, full in zip(img.shape[1::-1], (width, height))):
            raise ValueError(f'{path}: decoded {img.shape[1]} x {img.shape[0]} at 1/{reduction} '
                             f'does not match the header size {width} x {height}')
        return img

    def _visible_box(self, matrix: np.ndarray, box, margin: float):
        """The part of ``box`` (x0, y0, x1, y1) that the output sees through ``matrix``, with
        ``margin`` pixels to spare so bilinear taps after the pre-shrink stay inside it."""
        out_h, out_w = self.scale
        corners = np.array([[-0.5, -0.5, 1], [out_w - 0.5, -0.5, 1], [-0.5, out_h - 0.5, 1],
                            [out_w - 0.5, out_h - 0.5, 1]]).T
        xs, ys = (np.linalg.inv(matrix) @ corners)[:2]
        visible = (max(box[0], math.floor(xs.min() - margin)),
                   max(box[1], math.floor(ys.min() - margin)),
                   min(box[2], math.ceil(xs.max() + margin)),
                   min(box[3], math.ceil(ys.max() + margin)))
        empty = min(visible[2] - visible[0], visible[3] - visible[1]) < margin
        return box if empty else visible

    def __repr__(self):
        affine = self._affine
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'crop_ratio_range={self.crop_ratio_range}, '
                f'aspect_ratio_range={tuple(round(r, 4) for r in self.aspect_ratio_range)}, '
                f'max_attempts={self.max_attempts}, flip_prob={self.flip_prob}, '
                f'max_rotate_degree={affine.max_rotate_degree}, '
                f'max_translate_ratio={affine.max_translate_ratio}, '
                f'scaling_ratio_range={affine.scaling_ratio_range})')
