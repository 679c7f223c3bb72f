"""Checkpoint loading: the weights_only allow-list and pretrained weights without a network."""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmpretrain.registry import MODELS

from bioplugin.apis import load_config
from bioplugin.engine.checkpoint_allowlist import restricted_getattr
from bioplugin.engine.pretrained import (KNOWN_CHECKPOINTS, cached_checkpoint_path,
                                         resolve_pretrained)
from bioplugin.models import build_model
from bioplugin.errors import CheckpointError

from helpers import RECIPE_CONFIG, TINY_CONFIG


def test_message_hub_objects_load_with_weights_only(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(0.25)
    state = {'message_hub': {'log_scalars': {'train/loss': buffer}},
             'meta': {'best': np.float64(3.5), 'array': np.arange(4, dtype=np.int64)}}
    path = tmp_path / 'state.pth'
    torch.save(state, path)
    loaded = torch.load(path)  # weights_only=True is torch's default
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(0.375)
    assert loaded['meta']['best'] == 3.5
    np.testing.assert_array_equal(loaded['meta']['array'], np.arange(4))


class _RunsACommand:
    """Pickles to a call of os.system, the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}', )


def test_a_checkpoint_that_runs_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / 'payload-ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _RunsACommand(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_getattr_in_a_checkpoint_reaches_only_historybuffer_statistics():
    assert restricted_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='not on the checkpoint allow-list'):
        restricted_getattr(HistoryBuffer, '__init__')
    with pytest.raises(pickle.UnpicklingError):
        restricted_getattr(HistoryBuffer.mean, '__globals__')


class _FetchesGlobals:
    def __reduce__(self):
        return getattr, (HistoryBuffer.mean, '__globals__')


def test_a_checkpoint_cannot_use_getattr_to_reach_module_globals(tmp_path):
    path = tmp_path / 'sneaky.pth'
    torch.save({'meta': _FetchesGlobals()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    return tmp_path / 'torch'


def test_unreachable_weights_url_explains_the_offline_options(torch_home):
    cfg = load_config(RECIPE_CONFIG)
    url = 'http://127.0.0.1:9/resnext101_32x8d_imagenet.pth'  # nothing listens on port 9
    cfg.model.backbone.init_cfg.checkpoint = url
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained(build_model(cfg))
    message = str(error.value)
    assert url in message
    assert cached_checkpoint_path(url) in message
    assert str(torch_home) in cached_checkpoint_path(url)
    assert '--cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message


def test_the_recipe_names_the_published_imagenet_weights():
    cfg = load_config(RECIPE_CONFIG)
    init_cfg = cfg.model.backbone.init_cfg
    assert init_cfg == dict(type='Pretrained', checkpoint='torchvision_v2', prefix='backbone')
    assert KNOWN_CHECKPOINTS['torchvision_v2'] == (
        'https://download.pytorch.org/models/resnext101_32x8d-110c445d.pth')  # IMAGENET1K_V2
    assert KNOWN_CHECKPOINTS['mmpretrain'].startswith('https://download.openmmlab.com/')


def _tiny_backbone_checkpoint(cfg, path):
    """An MMPretrain-style checkpoint of the tiny backbone with recognisable weights."""
    backbone = MODELS.build(cfg.model.backbone)
    torch.manual_seed(3)
    state = {f'backbone.{k}': torch.randn_like(v) if v.is_floating_point() else v
             for k, v in backbone.state_dict().items()}
    torch.save({'state_dict': state, 'meta': {'epoch': 90}}, path)
    return state


def test_cached_url_and_local_file_initialise_the_backbone(torch_home, tmp_path):
    cfg = load_config(TINY_CONFIG)
    url = 'https://example.invalid/weights/tiny_backbone.pth'
    cached = cached_checkpoint_path(url)
    os.makedirs(osp.dirname(cached))
    state = _tiny_backbone_checkpoint(cfg, cached)

    for checkpoint in (url, cached):
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                           prefix='backbone')
        model = build_model(cfg)
        resolve_pretrained(model)
        assert model.backbone.init_cfg['checkpoint'] == cached  # no network involved
        model.init_weights()
        torch.testing.assert_close(model.backbone.conv1.weight, state['backbone.conv1.weight'])


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    cfg = load_config(TINY_CONFIG)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'no.pth'))
    with pytest.raises(CheckpointError, match=r'do not exist.*model.backbone.init_cfg=None'):
        resolve_pretrained(build_model(cfg))


def test_resumed_adamw_moments_take_the_layout_of_their_parameters():
    """Moments saved by a channels-last run (a GPU) and loaded for NCHW parameters (a CPU):
    the fused AdamW kernel pairs elements in memory order, so they must be re-laid first."""
    from mmengine.optim import OptimWrapper

    from bioplugin.engine.optim_wrappers import match_parameter_layout
    generator = torch.Generator().manual_seed(0)
    start, grads = (torch.randn(4, 3, 3, 3, generator=generator) for _ in range(2))

    def resumed_step(saved_layout, match):
        param = torch.nn.Parameter(start.clone())
        optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
        param.grad = grads.clone()
        optimizer.step()
        state = optimizer.state_dict()
        for key in ('exp_avg', 'exp_avg_sq'):
            state['state'][0][key] = state['state'][0][key].contiguous(
                memory_format=saved_layout)
        optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
        optimizer.load_state_dict(state)
        copied = match_parameter_layout(OptimWrapper(optimizer)) if match else 0
        param.grad = -grads
        optimizer.step()
        return param.detach(), copied

    expected, none_copied = resumed_step(torch.contiguous_format, match=True)
    assert none_copied == 0
    resumed, copied = resumed_step(torch.channels_last, match=True)
    assert copied == 2
    assert torch.equal(resumed, expected)
    # what it prevents: without it the step mixes up elements without an error
    assert not torch.allclose(resumed_step(torch.channels_last, match=False)[0], expected)
    assert match_parameter_layout(dict(type='OptimWrapper')) == 0  # not built: nothing to do
