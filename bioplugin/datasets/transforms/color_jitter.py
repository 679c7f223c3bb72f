import cv2
import numpy as np

from mmpretrain.datasets.transforms import ColorJitter
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class BioColorJitter(ColorJitter):
    """Brightness / contrast / saturation / hue jitter that works with numpy 2.

    Same parameters and sampling as MMPretrain's ``ColorJitter`` (factors uniform in
    ``[1 - x, 1 + x]``, hue shift uniform in ``[-hue, hue]``, the four operations in random
    order), applied like torchvision's ``ColorJitter`` (ITU-R 601 luma, as OpenCV's gray) in
    one float32 buffer with a single rounding at the end. Expects the 3-channel BGR ``uint8``
    image that ``BioLoadImage`` produces::

        dict(type='BioColorJitter', brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1)
    """

    def __init__(self, brightness=0., contrast=0., saturation=0., hue=0.):
        super().__init__(brightness, contrast, saturation, hue, backend='cv2')

    def transform(self, results: dict) -> dict:
        order, brightness, contrast, saturation, hue = self._rand_params()
        out = results['img'].astype(np.float32)
        for index in order:  # each step works in place on one float32 buffer
            if index == 0 and brightness is not None:
                _blend_into(out, brightness, 0.0)
            elif index == 1 and contrast is not None:
                _blend_into(out, contrast, cv2.mean(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY))[0])
            elif index == 2 and saturation is not None:
                _blend_into(out, saturation, cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[..., None])
            elif index == 3 and hue is not None:
                out = _shift_hue(out, hue)
        results['img'] = cv2.convertScaleAbs(out)  # rounds and saturates to uint8
        return results


def _blend_into(img: np.ndarray, factor: float, other) -> None:
    """``img = clip(factor * img + (1 - factor) * other, 0, 255)`` in place, as torchvision
    blends."""
    img *= factor
    if not (isinstance(other, float) and other == 0.0):
        img += (1.0 - factor) * other
    np.clip(img, 0, 255, out=img)


def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of a float BGR image in [0, 255] by ``shift`` turns (-0.5…0.5)."""
    hsv = cv2.cvtColor(img * (1.0 / 255.0), cv2.COLOR_BGR2HSV)  # float: H in [0, 360)
    hue = hsv[..., 0]
    # OpenCV's HSV2BGR wraps hues above 360 (not below 0): cheaper than a modulo pass
    hue += shift * 360.0 + (360.0 if shift < 0 else 0.0)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    bgr *= 255.0
    return bgr
