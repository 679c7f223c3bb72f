import random

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from mmcv.transforms import Compose
from mmengine.config import Config

from bioplugin.datasets.transforms import BioColorJitter, BioRandomAffine
from bioplugin.errors import ConfigError
from mmpretrain.registry import TRANSFORMS

from helpers import RECIPE_CONFIG


@pytest.fixture(scope='module')
def recipe():
    """The recipe as declared, its fill values resolved as BioRunner resolves them."""
    from bioplugin.datasets.normalisation_fill import apply_fill_mean
    cfg = Config.fromfile(RECIPE_CONFIG)
    apply_fill_mean(cfg)
    return cfg


def test_train_pipeline_holds_the_recipe_operations(recipe):
    steps = {step['type']: step for step in recipe.train_pipeline}
    assert steps['BioLoadImage']['decode'] is False  # the fused warp decodes at reduced size
    # crop, flip, rotation, translation and scale: one fused warp
    fused = steps['BioRandomResizedAffine']
    assert fused['scale'] == 224 and tuple(fused['crop_ratio_range']) == (0.7, 1.0)
    assert fused['flip_prob'] == 0.5
    assert fused['max_rotate_degree'] == 20 and fused['max_translate_ratio'] == 0.1
    assert tuple(fused['scaling_ratio_range']) == (0.9, 1.1)
    jitter = steps['BioColorJitter']
    assert [jitter[k] for k in ('brightness', 'contrast', 'saturation', 'hue')] == [
        0.15, 0.15, 0.15, 0.1]
    erasing = steps['RandomErasing']
    assert (erasing['erase_prob'], erasing['min_area_ratio'], erasing['max_area_ratio']) == (
        0.2, 0.02, 0.1)
    # erasing fills the preprocessor's mean colour, which normalisation maps to 0
    # (torchvision's value=0); the value is declared once, in the preprocessor
    assert Config.fromfile(RECIPE_CONFIG).train_pipeline[3]['fill_color'] == 'mean'
    assert erasing['fill_color'] == recipe.data_preprocessor.mean[::-1]
    assert recipe.data_preprocessor.std == [58.395, 57.12, 57.375]
    assert recipe.data_preprocessor.to_rgb is True
    test_types = [step['type'] for step in recipe.test_pipeline]
    assert test_types == ['BioLoadImage', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    assert recipe.test_pipeline[1]['scale'] == 256 and recipe.test_pipeline[1]['edge'] == 'short'
    assert recipe.test_pipeline[2]['crop_size'] == 224


def test_erasing_fills_whatever_mean_the_preprocessor_declares(recipe, tmp_path):
    from bioplugin.engine.runner import resolve_config

    def resolved_fill(cfg):
        steps = resolve_config(cfg).train_dataloader.dataset.pipeline
        return next(step['fill_color'] for step in steps if step['type'] == 'RandomErasing')

    cfg = Config.fromfile(RECIPE_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    assert resolved_fill(cfg) == [103.53, 116.28, 123.675]  # BGR: images load as BGR
    cfg.data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5] * 3, to_rgb=True)
    assert resolved_fill(cfg) == [127.5] * 3
    cfg.data_preprocessor = dict(mean=[10, 20, 30], std=[1, 1, 1], to_rgb=False)
    assert resolved_fill(cfg) == [10.0, 20.0, 30.0]
    cfg.data_preprocessor = dict(to_rgb=True)
    with pytest.raises(ConfigError, match="fill_color='mean' needs the mean of data_preprocessor"):
        resolve_config(cfg)


def build_pipeline(steps):
    return Compose([TRANSFORMS.build(step) for step in steps])


def _write(path, img):
    assert cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture
def odd_images(tmp_path):
    rng = np.random.default_rng(0)
    paths = [_write(tmp_path / f'colour_{h}x{w}.jpg', rng.integers(0, 255, (h, w, 3), np.uint8))
             for h, w in ((50, 300), (400, 120), (224, 224), (777, 1000), (20, 20))]
    paths.append(_write(tmp_path / 'gray.png', rng.integers(0, 255, (90, 60), np.uint8)))
    paths.append(_write(tmp_path / 'rgba.png', rng.integers(0, 255, (64, 80, 4), np.uint8)))
    return paths


def _run(pipeline, path, seed):
    random.seed(seed)
    np.random.seed(seed)
    return pipeline(dict(img_path=path))['inputs']


def test_pipelines_give_224_outputs_for_any_size_grayscale_and_rgba(recipe, odd_images):
    train, test = build_pipeline(recipe.train_pipeline), build_pipeline(recipe.test_pipeline)
    for path in odd_images:
        for seed in range(3):
            assert _run(train, path, seed).shape == (3, 224, 224), path
        assert test(dict(img_path=path))['inputs'].shape == (3, 224, 224), path


def test_train_pipeline_is_reproducible_under_a_fixed_seed(recipe, odd_images):
    train = build_pipeline(recipe.train_pipeline)
    for path in odd_images[:4]:
        first, again = _run(train, path, 42), _run(train, path, 42)
        assert torch.equal(first, again)
    outputs = [_run(train, odd_images[3], seed) for seed in range(4)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


def _fixed_jitter(**factor):
    """A BioColorJitter whose only operation uses exactly the given factor."""
    name, value = next(iter(factor.items()))
    return BioColorJitter(**{name: (value, value)})


@pytest.mark.parametrize('name,value,reference', [
    ('brightness', 1.12, TF.adjust_brightness),
    ('contrast', 0.86, TF.adjust_contrast),
    ('saturation', 1.15, TF.adjust_saturation),
    ('hue', 0.1, TF.adjust_hue),
    ('hue', -0.1, TF.adjust_hue),
])
def test_colour_jitter_matches_torchvision_on_numpy2(name, value, reference):
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (32, 40, 3), np.uint8)
    ours = _fixed_jitter(**{name: value})(dict(img=bgr.copy()))['img']
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)
    theirs = reference(rgb.float() / 255, value).clamp(0, 1) * 255
    theirs = theirs.permute(1, 2, 0).numpy()[..., ::-1]
    assert ours.dtype == np.uint8 and ours.shape == bgr.shape
    assert np.abs(ours.astype(np.float32) - theirs).max() <= 1.0


def test_colour_jitter_samples_within_the_ranges():
    jitter = BioColorJitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1)
    np.random.seed(0)
    for _ in range(200):
        order, b, c, s, h = jitter._rand_params()
        assert sorted(order) == [0, 1, 2, 3]
        assert 0.85 <= b <= 1.15 and 0.85 <= c <= 1.15 and 0.85 <= s <= 1.15
        assert -0.1 <= h <= 0.1


def test_affine_rotation_is_counter_clockwise_about_the_centre():
    img = np.random.default_rng(2).integers(0, 255, (33, 33, 3), np.uint8)
    matrix = BioRandomAffine.affine_matrix(33, 33, angle=90, shift=(0, 0), scale=1.0)
    rotated = cv2.warpAffine(img, matrix, (33, 33), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(rotated, np.rot90(img, k=1))


def test_affine_shift_moves_content_by_whole_pixels():
    img = np.zeros((20, 30, 3), np.uint8)
    img[5, 7] = 255
    matrix = BioRandomAffine.affine_matrix(30, 20, angle=0, shift=(3, -2), scale=1.0)
    moved = cv2.warpAffine(img, matrix, (30, 20))
    assert tuple(np.argwhere(moved[..., 0] == 255)[0]) == (3, 10)


def test_affine_samples_the_torchvision_distributions():
    transform = BioRandomAffine(max_rotate_degree=20, max_translate_ratio=0.1,
                                scaling_ratio_range=(0.9, 1.1))
    np.random.seed(0)
    samples = [transform._rand_params(200, 100) for _ in range(4000)]
    angles = np.array([s[0] for s in samples])
    shifts = np.array([s[1] for s in samples])
    scales = np.array([s[2] for s in samples])
    assert angles.min() >= -20 and angles.max() <= 20
    assert abs(angles.mean()) < 0.5 and angles.std() == pytest.approx(40 / 12 ** 0.5, rel=0.05)
    assert np.abs(shifts[:, 0]).max() <= 20 and np.abs(shifts[:, 1]).max() <= 10
    assert set(np.unique(shifts[:, 1])) == set(range(-10, 11))
    assert scales.min() >= 0.9 and scales.max() <= 1.1 and abs(scales.mean() - 1) < 0.005


def test_affine_keeps_size_and_channels():
    transform = BioRandomAffine()
    img = np.full((50, 70, 3), 200, np.uint8)
    out = transform(dict(img=img))['img']
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8
