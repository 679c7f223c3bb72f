import io

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from mmcv.transforms import Compose
from mmcv.transforms.utils import cache_random_params
from PIL import Image

from bioplugin.datasets.image_io import decode_image, probe_image
from bioplugin.datasets.transforms import BioRandomResizedAffine
from mmpretrain.registry import TRANSFORMS

N = 20000
# two-sample Kolmogorov-Smirnov critical value at alpha = 0.05, with a 1.5x margin
KS_LIMIT = 1.5 * 1.36 * np.sqrt(2 / N)


def ks_statistic(a, b) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side='right') / len(a)
    cdf_b = np.searchsorted(b, grid, side='right') / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def smooth_image(height: int, width: int) -> np.ndarray:
    """Gradients and low-frequency sinusoids, different per channel and not symmetric."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    channels = [40 + 150 * x + 40 * np.sin(2 * np.pi * 1.5 * y),
                60 + 120 * y + 50 * np.cos(2 * np.pi * (x + 2 * y)),
                128 + 90 * np.sin(2 * np.pi * (2 * x - y)) * x]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def summarise(crops, flips, angles, shifts, scales, width, height):
    crops = np.asarray(crops, float)
    left, top, w, h = crops.T
    return {'area': w * h / (width * height), 'aspect': w / h,
            'top': top / np.maximum(height - h, 1), 'left': left / np.maximum(width - w, 1),
            'flip': np.asarray(flips, float), 'angle': np.asarray(angles),
            'tx': np.asarray(shifts)[:, 0], 'ty': np.asarray(shifts)[:, 1],
            'scale': np.asarray(scales)}


def fused_samples(transform, width, height):
    np.random.seed(0)
    draws = [transform.rand_params(width, height) for _ in range(N)]
    return summarise([d['crop'] for d in draws], [d['flip'] for d in draws],
                     [d['angle'] for d in draws], [d['translate'] for d in draws],
                     [d['scale'] for d in draws], width, height)


def torchvision_samples(width, height, out=224):
    torch.manual_seed(0)
    img = torch.empty(3, height, width)
    crops, flips, angles, shifts, scales = [], [], [], [], []
    for _ in range(N):
        top, left, h, w = T.RandomResizedCrop.get_params(img, [0.7, 1.0], [3 / 4, 4 / 3])
        crops.append((left, top, w, h))
        flips.append(bool(torch.rand(1) < 0.5))
        angles.append(T.RandomRotation.get_params([-20., 20.]))
        _, shift, scale, _ = T.RandomAffine.get_params([0., 0.], [0.1, 0.1], [0.9, 1.1], None,
                                                        [out, out])
        shifts.append(shift)
        scales.append(scale)
    return summarise(crops, flips, angles, shifts, scales, width, height)


@pytest.mark.parametrize('size', [(500, 375), (400, 250)])  # 400 x 250: mostly the fallback
def test_parameters_follow_torchvision_distributions(size):
    reference = torchvision_samples(*size)
    fused = fused_samples(BioRandomResizedAffine(), *size)
    for name in reference:
        assert ks_statistic(fused[name], reference[name]) < KS_LIMIT, name
    assert abs(fused['flip'].mean() - 0.5) < 0.02
    if size == (400, 250):  # the fallback crop (250 x 333) is drawn often, by both
        fallback = (fused['area'] == 333 * 250 / (400 * 250)).mean()
        assert 0.3 < fallback < 0.9
        assert abs(fallback - (reference['area'] == 333 * 250 / (400 * 250)).mean()) < 0.03
    if size == (500, 375):  # the same checks catch each parameter drawn from a wrong range
        wrong = fused_samples(BioRandomResizedAffine(
            crop_ratio_range=(0.5, 1.0), aspect_ratio_range=(0.75, 1.5), flip_prob=0.45,
            max_rotate_degree=17, max_translate_ratio=0.08, scaling_ratio_range=(0.9, 1.05)),
            *size)
        for name in ('area', 'aspect', 'angle', 'tx', 'ty', 'scale'):
            assert ks_statistic(wrong[name], reference[name]) > KS_LIMIT, name
        assert abs(wrong['flip'].mean() - 0.5) > 0.02


def reference_chain(img, params, out=224, shrink=cv2.INTER_LINEAR):
    """Crop + resize, flip, rotate, then translate + scale: four separate resamplings."""
    left, top, w, h = params['crop']
    img = cv2.resize(img[top:top + h, left:left + w], (out, out), interpolation=shrink)
    if params['flip']:
        img = cv2.flip(img, 1)
    centre = ((out - 1) * 0.5, (out - 1) * 0.5)
    img = cv2.warpAffine(img, cv2.getRotationMatrix2D(centre, params['angle'], 1.0), (out, out))
    matrix = cv2.getRotationMatrix2D(centre, 0, params['scale'])
    matrix[:, 2] += params['translate']
    return cv2.warpAffine(img, matrix, (out, out))


def chain_masks(params, out=224):
    """Output pixels the separate steps take from well inside the image, and those they
    leave well outside it (border fill: outside the crop or the rotated frame)."""
    ones = np.full((params['crop'][3], params['crop'][2]), 255, np.uint8)
    valid = reference_chain(ones, dict(params, crop=(0, 0, *ones.shape[::-1]))) > 0
    kernel = np.ones((7, 7), np.uint8)
    interior = cv2.erode(valid.astype(np.uint8), kernel).astype(bool)
    outside = ~cv2.dilate(valid.astype(np.uint8), kernel).astype(bool)
    return interior, outside


def assert_close(out, ref, mask, mean_limit, p99_limit):
    diff = np.abs(out.astype(int) - ref.astype(int))[mask]
    assert mask.mean() > 0.4
    assert diff.mean() < mean_limit and np.percentile(diff, 99) <= p99_limit, (
        diff.mean(), np.percentile(diff, 99))


@pytest.mark.parametrize('shape, shrink', [((300, 400), cv2.INTER_LINEAR),
                                           ((1500, 2000), cv2.INTER_AREA)])  # pre-shrunk
def test_one_warp_matches_the_separate_steps(shape, shrink):
    img = smooth_image(*shape)
    transform = BioRandomResizedAffine()
    flips, seen_outside = set(), False
    for seed in range(6):
        np.random.seed(seed)
        results = transform(dict(img=img))
        params = results['resized_affine_params']
        assert results['img'].shape == (224, 224, 3) and results['img_shape'] == (224, 224)
        assert (params['pre_shrink'] > 1) == (shrink == cv2.INTER_AREA)
        flips.add(params['flip'])
        ref = reference_chain(img, params, shrink=shrink)
        interior, outside = chain_masks(params)
        assert_close(results['img'], ref, interior, 2.0, 6)
        # the same border fill, also where translation shows what rotation turned out
        assert np.all(results['img'][outside] == 0)
        seen_outside |= outside.any()
        assert np.abs(results['img'].astype(int) - ref).mean() < 1.5
        # a wrong composition (no flip, or the rotation the other way round) is far off
        wrong = reference_chain(img, dict(params, flip=not params['flip'],
                                          angle=-params['angle']), shrink=shrink)
        assert np.abs(results['img'].astype(int) - wrong).mean() > 10
    assert flips == {False, True} and seen_outside


def test_a_large_source_is_pre_shrunk_so_fine_detail_does_not_alias():
    y, x = np.mgrid[0:1500, 0:2000]
    checkerboard = np.repeat((((x + y) % 2) * 255).astype(np.uint8)[..., None], 3, -1)
    transform = BioRandomResizedAffine()
    for seed in range(3):
        np.random.seed(seed)
        results = transform(dict(img=checkerboard))
        params = results['resized_affine_params']
        assert params['pre_shrink'] in (3, 4)
        seen = results['img'][chain_masks(params)[0]].astype(float)
        # averaged to mid-grey; a bare warp would show moiré (std ~40) or all black / white
        assert abs(seen.mean() - 127.5) < 3 and seen.std() < 10


def jpeg_results(img, orientation=1, path='big.jpg'):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img[..., ::-1]).save(buffer, 'JPEG', quality=95, exif=exif)
    data = buffer.getvalue()
    return dict(img_path=path, img_bytes=data, img_header=probe_image(data, path))


@pytest.mark.parametrize('orientation', [1, 6])
def test_reduced_jpeg_decoding_matches_the_full_decode(orientation):
    stored = smooth_image(1500, 2000)
    lazy = jpeg_results(stored, orientation)
    full = decode_image(lazy['img_bytes'], 'big.jpg')
    upright = (1500, 2000) if orientation == 1 else (2000, 1500)
    assert full.shape[:2] == upright
    assert (lazy['img_header'].height, lazy['img_header'].width) == upright
    transform = BioRandomResizedAffine()
    for seed in range(3):
        np.random.seed(seed)
        reduced = transform(dict(lazy))
        np.random.seed(seed)
        reference = transform(dict(img=full))
        params = reduced['resized_affine_params']
        assert params['crop'] == reference['resized_affine_params']['crop']
        assert params['reduction'] == 4 and params['pre_shrink'] == 1
        assert 'img_bytes' not in reduced and reduced['img'].shape == (224, 224, 3)
        assert_close(reduced['img'], reference['img'], chain_masks(params)[0], 1.5, 6)
    # a small crop needs more pixels: a smaller reduction
    np.random.seed(0)
    small = BioRandomResizedAffine(crop_ratio_range=(0.05, 0.1))(dict(lazy))
    assert small['resized_affine_params']['reduction'] in (1, 2)


def test_png_bytes_are_decoded_at_full_size_then_pre_shrunk():
    ok, png = cv2.imencode('.png', smooth_image(1500, 2000))
    assert ok
    data = png.tobytes()
    np.random.seed(0)
    results = BioRandomResizedAffine()(dict(img_bytes=data, img_header=probe_image(data, 'a'),
                                            img_path='a.png'))
    params = results['resized_affine_params']
    assert params['reduction'] == 1 and params['pre_shrink'] > 2
    ref = reference_chain(smooth_image(1500, 2000), params, shrink=cv2.INTER_AREA)
    assert_close(results['img'], ref, chain_masks(params)[0], 2.0, 6)


def test_built_from_config_runs_in_a_pipeline_and_degenerates_to_a_crop_resize(tmp_path):
    cfg = dict(type='BioRandomResizedAffine', scale=224, crop_ratio_range=(0.7, 1.0),
               flip_prob=0.5, max_rotate_degree=20, max_translate_ratio=0.1,
               scaling_ratio_range=(0.9, 1.1))
    pipeline = Compose([TRANSFORMS.build(cfg), TRANSFORMS.build(dict(type='PackInputs'))])
    img = smooth_image(375, 500)
    np.random.seed(0)
    assert pipeline(dict(img=img))['inputs'].shape == (3, 224, 224)
    # lazily loaded: the loader hands over the bytes and header, the transform decodes
    path = str(tmp_path / 'big.jpg')
    assert cv2.imwrite(path, smooth_image(1200, 1600))
    lazy = Compose([TRANSFORMS.build(dict(type='BioLoadImage', decode=False)),
                    TRANSFORMS.build(cfg), TRANSFORMS.build(dict(type='PackInputs'))])
    packed = lazy(dict(img_path=path))
    assert packed['inputs'].shape == (3, 224, 224)
    assert packed['data_samples'].img_shape == (224, 224)
    # no flip, rotation, translation or scale: MMPretrain's RandomResizedCrop, same draws
    plain = TRANSFORMS.build(dict(cfg, flip_prob=0, max_rotate_degree=0,
                                  max_translate_ratio=0, scaling_ratio_range=(1, 1)))
    crop = TRANSFORMS.build(dict(type='RandomResizedCrop', scale=224,
                                 crop_ratio_range=(0.7, 1.0)))
    rng = np.random.default_rng(0)  # fine detail, so a half-pixel slip shows
    detailed = cv2.GaussianBlur(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (0, 0), 1)
    detailed = cv2.normalize(detailed, None, 0, 255, cv2.NORM_MINMAX)
    for seed in range(3):
        np.random.seed(seed)
        out = plain(dict(img=detailed))['img']
        np.random.seed(seed)
        ref = crop(dict(img=detailed))['img']
        assert np.abs(out.astype(int) - ref).max() <= 2
    # non-square output: scale is (h, w) as in RandomResizedCrop
    assert TRANSFORMS.build(dict(cfg, scale=(160, 240)))(dict(img=img))['img'].shape == (
        160, 240, 3)
    # cache_random_params gives the same draw twice
    transform = TRANSFORMS.build(cfg)
    with cache_random_params(transform):
        first, second = (transform(dict(img=img))['img'] for _ in range(2))
    assert np.array_equal(first, second)


@pytest.mark.parametrize('kwargs', [dict(scale=0), dict(scale=(224, 0)),
                                    dict(crop_ratio_range=(0.8, 0.7)),
                                    dict(crop_ratio_range=(0, 1)),
                                    dict(aspect_ratio_range=(1.5, 1)), dict(max_attempts=-1),
                                    dict(flip_prob=1.5), dict(max_rotate_degree=-1),
                                    dict(max_translate_ratio=2),
                                    dict(scaling_ratio_range=(1.1, 0.9)),
                                    dict(interpolation='area')])
def test_invalid_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BioRandomResizedAffine(**kwargs)
