import math

import cv2
import numpy as np

from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class BioRandomAffine(BaseTransform):
    """Random rotation, translation and scale about the image centre in one resampling.

    Samples like torchvision's ``RandomRotation(max_rotate_degree)`` followed by
    ``RandomAffine(0, translate, scale)``: angle uniform in ``±max_rotate_degree``, shift
    uniform in ``±max_translate_ratio`` of width / height (rounded to whole pixels), scale
    uniform in ``scaling_ratio_range``. The two warps compose into one affine matrix, so the
    image is resampled once (bilinear); uncovered pixels get ``border_value``::

        dict(type='BioRandomAffine', max_rotate_degree=20, max_translate_ratio=0.1,
             scaling_ratio_range=(0.9, 1.1))
    """

    def __init__(self,
                 max_rotate_degree: float = 20.,
                 max_translate_ratio: float = 0.1,
                 scaling_ratio_range=(0.9, 1.1),
                 border_value=(0, 0, 0),
                 interpolation: str = 'bilinear'):
        if max_rotate_degree < 0 or not 0 <= max_translate_ratio <= 1:
            raise ValueError('max_rotate_degree must be >= 0 and max_translate_ratio in [0, 1]')
        if not 0 < scaling_ratio_range[0] <= scaling_ratio_range[1]:
            raise ValueError(f'invalid scaling_ratio_range {scaling_ratio_range}')
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.scaling_ratio_range = tuple(scaling_ratio_range)
        self.border_value = tuple(border_value)
        self.interpolation = {'nearest': cv2.INTER_NEAREST, 'bilinear': cv2.INTER_LINEAR,
                              'bicubic': cv2.INTER_CUBIC}[interpolation]

    @cache_randomness
    def _rand_params(self, width: int, height: int):
        angle = np.random.uniform(-self.max_rotate_degree, self.max_rotate_degree)
        max_dx = self.max_translate_ratio * width
        max_dy = self.max_translate_ratio * height
        shift = (round(np.random.uniform(-max_dx, max_dx)),
                 round(np.random.uniform(-max_dy, max_dy)))
        scale = np.random.uniform(*self.scaling_ratio_range)
        return angle, shift, scale

    @staticmethod
    def affine_matrix(width: int, height: int, angle: float, shift, scale: float) -> np.ndarray:
        """2×3 matrix: rotate by ``angle`` degrees (counter-clockwise) and scale about the
        centre, then shift by ``shift`` pixels."""
        centre = ((width - 1) * 0.5, (height - 1) * 0.5)
        matrix = cv2.getRotationMatrix2D(centre, angle, scale)
        matrix[:, 2] += shift
        return matrix

    def transform(self, results: dict) -> dict:
        img = results['img']
        height, width = img.shape[:2]
        angle, shift, scale = self._rand_params(width, height)
        if angle == 0 and shift == (0, 0) and math.isclose(scale, 1.0):
            return results
        matrix = self.affine_matrix(width, height, angle, shift, scale)
        border = self.border_value[:img.shape[2]] if img.ndim == 3 else self.border_value[0]
        results['img'] = cv2.warpAffine(img, matrix, (width, height), flags=self.interpolation,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(max_rotate_degree={self.max_rotate_degree}, '
                f'max_translate_ratio={self.max_translate_ratio}, '
                f'scaling_ratio_range={self.scaling_ratio_range})')
