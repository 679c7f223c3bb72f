import cv2
import numpy as np

from mmpretrain.datasets.transforms import ColorJitter
from mmpretrain.registry import TRANSFORMS

# ITU-R 601 luma weights in BGR order, as torchvision's rgb_to_grayscale uses them in RGB order.
_BGR_LUMA = np.array([0.114, 0.587, 0.299], dtype=np.float32)


@TRANSFORMS.register_module()
class BioColorJitter(ColorJitter):
    """Brightness / contrast / saturation / hue jitter that works with numpy 2.

    Same parameters and sampling as MMPretrain's ``ColorJitter`` (factors uniform in
    ``[1 - x, 1 + x]``, hue shift uniform in ``[-hue, hue]``, the four operations in random
    order), applied like torchvision's ``ColorJitter`` in float32 with a single rounding at
    the end. Expects the 3-channel BGR ``uint8`` image that ``LoadImageFromFile`` produces::

        dict(type='BioColorJitter', brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1)
    """

    def __init__(self, brightness=0., contrast=0., saturation=0., hue=0.):
        super().__init__(brightness, contrast, saturation, hue, backend='cv2')

    def transform(self, results: dict) -> dict:
        img = results['img']
        order, brightness, contrast, saturation, hue = self._rand_params()
        out = img.astype(np.float32)
        for index in order:
            if index == 0 and brightness is not None:
                out *= brightness
            elif index == 1 and contrast is not None:
                mean = float((out.reshape(-1, 3) @ _BGR_LUMA).mean())
                out = _blend(out, mean, contrast)
            elif index == 2 and saturation is not None:
                gray = (out @ _BGR_LUMA)[..., None]
                out = _blend(out, gray, saturation)
            elif index == 3 and hue is not None:
                out = _shift_hue(out, hue)
        results['img'] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return results


def _blend(img: np.ndarray, other, factor: float) -> np.ndarray:
    """``factor * img + (1 - factor) * other``, clipped to the uint8 range like torchvision."""
    return np.clip(factor * img + (1.0 - factor) * other, 0, 255)


def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of a float BGR image in [0, 255] by ``shift`` turns (-0.5…0.5)."""
    hsv = cv2.cvtColor(np.clip(img, 0, 255) / 255.0, cv2.COLOR_BGR2HSV)  # float: H in [0, 360)
    hsv[..., 0] = (hsv[..., 0] + shift * 360.0) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0
