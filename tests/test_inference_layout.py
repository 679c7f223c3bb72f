"""The memory layout of float32 CPU inference: a pinned ``inference_layout`` is what runs, in
BioClassifier and in the Runner's test path; ``'auto'`` probes once per machine and model and
keeps the outcome in the user's cache; predictions do not depend on the layout."""
import json
import time

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from bioplugin.apis import BioClassifier, load_config
from bioplugin.apis.evaluate import build_test_config, prediction_writer, run_test
from bioplugin.engine.cpu_info import cpu_name
from bioplugin.engine import inference_layout
from bioplugin.engine.hooks import InferenceLayoutHook
from bioplugin.engine.inference_layout import (LAYOUTS, cache_file, probe_layouts, read_cache,
                                               resolve_layout)
from bioplugin.engine.runner import resolve_config
from bioplugin.errors import ConfigError
from bioplugin.models import build_model
from bioplugin.models.builder import bare_model
from helpers import TINY_CONFIG, make_image_folder

CLASSES = ['0', '1', '2']


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A randomly initialised tiny model whose logit layer is scaled up (scores far from
    uniform, so that comparing them means something), saved as training saves it, and a
    folder of images."""
    tmp = tmp_path_factory.mktemp('layout')
    data = make_image_folder(str(tmp / 'data'), CLASSES, per_class=2, val_per_class=4,
                             test_images=8)
    cfg = load_config(TINY_CONFIG, data_root=data, work_dir=str(tmp / 'work'))
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = build_model(cfg, pretrained=False)
    model.init_weights()
    state = model.state_dict()
    logit_weight = state['head.layers.5.weight']
    state['head.layers.5.weight'] = 5 * torch.randn(logit_weight.shape,
                                                    generator=torch.Generator().manual_seed(0))
    checkpoint = str(tmp / 'random.pth')
    torch.save({'state_dict': state, 'meta': {'dataset_meta': {'classes': CLASSES}}},
               checkpoint)
    images = sorted(str(path) for path in (tmp / 'data' / 'test').glob('*.jpg'))
    return dict(cfg=cfg, checkpoint=checkpoint, images=images)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory of this test's own; the path of its layout file."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    return tmp_path / 'cache' / 'bioplugin' / 'layout.json'


@pytest.fixture
def probes(monkeypatch):
    """The probes that ran, in order (each a real probe)."""
    ran = []

    def counted(*args, **kwargs):
        outcome = probe_layouts(*args, **kwargs)
        ran.append(outcome)
        return outcome

    monkeypatch.setattr(inference_layout, 'probe_layouts', counted)
    return ran


def spatial_convs(model: torch.nn.Module) -> list:
    return [m.weight for m in bare_model(model).modules()
            if isinstance(m, torch.nn.Conv2d) and m.weight.shape[2:] != (1, 1)]


def layout_of(model: torch.nn.Module) -> str:
    """``'channels_last'`` or ``'nchw'``: the layout of every spatial convolution weight."""
    layouts = {'channels_last' if weight.is_contiguous(memory_format=torch.channels_last)
               and not weight.is_contiguous() else 'nchw' for weight in spatial_convs(model)}
    assert len(layouts) == 1, layouts
    return layouts.pop()


def test_auto_resolves_by_precision_and_device_and_pins_hold_everywhere():
    assert resolve_layout('auto', 'bf16', 'cpu') == 'channels_last'
    assert resolve_layout('auto', 'fp16', 'cuda') == 'channels_last'
    assert resolve_layout('auto', 'fp32', 'cuda') == 'nchw'
    assert resolve_layout('auto', 'fp32', 'cpu') == 'probe'
    for pinned in ('channels_last', 'nchw'):
        for precision, device in (('fp32', 'cpu'), ('bf16', 'cpu'), ('fp32', 'cuda')):
            assert resolve_layout(pinned, precision, device) == pinned
    with pytest.raises(ConfigError, match="inference_layout='nhwc'"):
        resolve_layout('nhwc', 'fp32', 'cpu')
    assert LAYOUTS == ('auto', 'channels_last', 'nchw')


def test_an_unknown_layout_stops_the_runner_and_the_classifier(tiny):
    cfg = tiny['cfg'].copy()
    cfg.inference_layout = 'nhwc'
    with pytest.raises(ConfigError, match='inference_layout'):
        resolve_config(cfg)
    with pytest.raises(ConfigError, match='inference_layout'):
        BioClassifier(tiny['cfg'], tiny['checkpoint'], device='cpu', precision='fp32',
                      inference_layout='nhwc')


@pytest.mark.parametrize('layout', ['channels_last', 'nchw'])
def test_a_pinned_layout_is_honoured_by_the_classifier(tiny, cache, probes, layout):
    by_argument = BioClassifier(tiny['cfg'], tiny['checkpoint'], device='cpu',
                                precision='fp32', inference_layout=layout)
    cfg = tiny['cfg'].copy()
    cfg.inference_layout = layout
    by_config = BioClassifier(cfg, tiny['checkpoint'], device='cpu', precision='fp32')
    for classifier in (by_argument, by_config):
        assert classifier.inference_layout == layout
        classifier.predict_scores(tiny['images'][:4])
        assert layout_of(classifier.model) == layout
    assert probes == [] and not cache.exists()  # a pinned layout needs no probe


@pytest.mark.parametrize('layout', ['channels_last', 'nchw'])
def test_a_pinned_layout_is_honoured_by_the_runners_test(tiny, cache, probes, layout):
    cfg = tiny['cfg'].copy()
    cfg.inference_layout = layout
    runner, _ = run_test(build_test_config(cfg, tiny['checkpoint'], 'val', precision='fp32'))
    hooks = [hook for hook in runner.hooks if isinstance(hook, InferenceLayoutHook)]
    assert [(hook.precision, hook.layout) for hook in hooks] == [('fp32', layout)]
    assert layout_of(runner.model) == layout
    assert probes == [] and not cache.exists()


def test_predictions_are_the_same_whichever_layout_runs(tiny, cache):
    images = tiny['images']
    outputs = {}
    for layout in ('nchw', 'channels_last'):
        classifier = BioClassifier(tiny['cfg'], tiny['checkpoint'], device='cpu',
                                   precision='fp32', inference_layout=layout)
        outputs[layout] = classifier.outputs(images)[0]
        assert layout_of(classifier.model) == layout
    scores = BioClassifier(tiny['cfg'], tiny['checkpoint'], device='cpu',
                           precision='fp32').predict_scores(images)  # 'auto'
    assert scores.max(1).min() < 0.9 and scores.max() > 0.5  # neither uniform nor one-hot
    for key in ('logits', 'features'):
        np.testing.assert_allclose(outputs['channels_last'][key], outputs['nchw'][key],
                                   atol=1e-5, rtol=0)
    softmax = torch.from_numpy(outputs['nchw']['logits']).softmax(1).numpy()
    np.testing.assert_allclose(scores, softmax, atol=1e-5, rtol=0)
    # the Runner's test of either layout gives the same logits too
    logits = {}
    for layout in ('nchw', 'channels_last'):
        cfg = tiny['cfg'].copy()
        cfg.inference_layout = layout
        runner, _ = run_test(build_test_config(cfg, tiny['checkpoint'], 'val', precision='fp32'))
        logits[layout] = prediction_writer(runner).logits
    np.testing.assert_allclose(logits['channels_last'], logits['nchw'], atol=1e-5, rtol=0)


def test_the_probe_runs_once_and_the_cache_serves_the_next_model(tiny, cache, probes,
                                                                  monkeypatch):
    def predict():
        classifier = BioClassifier(tiny['cfg'], tiny['checkpoint'], device='cpu',
                                   precision='fp32')
        assert classifier.inference_layout == 'auto'
        classifier.predict_scores(tiny['images'][:4])
        return layout_of(classifier.model)

    first = predict()
    assert len(probes) == 1 and first == probes[0]['layout']
    assert str(cache) == cache_file() and cache.exists()
    (entry,) = read_cache().values()
    assert entry['layout'] == first and entry['torch'] == torch.__version__
    assert 'input 3x' in entry['model'] and entry['cpu']
    assert predict() == first and len(probes) == 1  # the second model: from the cache

    # the cache decides: an entry saying the other layout is what the next model runs
    other = 'nchw' if first == 'channels_last' else 'channels_last'
    stored = json.loads(cache.read_text())
    for value in stored['entries'].values():
        value['layout'] = other
    cache.write_text(json.dumps(stored))
    assert predict() == other and len(probes) == 1

    # another torch version, another CPU model, another oneDNN cap: a probe each
    monkeypatch.setattr(torch, '__version__', '9.9.9')
    predict()
    assert len(probes) == 2
    monkeypatch.setattr(inference_layout, 'cpu_name',
                        lambda: cpu_name(dict(vendor='AuthenticAMD', model='AMD EPYC 9R14',
                                              family='family 25 model 17 stepping 1')))
    predict()
    assert len(probes) == 3
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    predict()
    predict()
    assert len(probes) == 4
    assert len(read_cache()) == 4  # every machine's outcome is kept


class _SlowIn(torch.nn.Module):
    """A convolution that takes 30 ms longer when its weight is in ``slow_layout``."""

    def __init__(self, slow_layout: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.slow_layout = slow_layout

    def forward(self, x):
        nhwc = self.conv.weight.is_contiguous(memory_format=torch.channels_last) and \
            not self.conv.weight.is_contiguous()
        if ('channels_last' if nhwc else 'nchw') == self.slow_layout:
            time.sleep(0.03)
        return self.conv(x)


@pytest.mark.parametrize('slow, fast', [('nchw', 'channels_last'), ('channels_last', 'nchw')])
def test_the_probe_keeps_the_faster_layout(slow, fast):
    module = _SlowIn(slow)
    outcome = probe_layouts(module, torch.randn(2, 3, 8, 8), rounds=3)
    assert outcome['layout'] == fast and layout_of(module) == fast
    assert len(outcome['nchw_s']) == len(outcome['channels_last_s']) == 3
    assert min(outcome[f'{slow}_s']) > max(outcome[f'{fast}_s'])
    assert outcome['probe_s'] >= 0.03 * 4  # 3 timed runs and the untimed one of the slow
