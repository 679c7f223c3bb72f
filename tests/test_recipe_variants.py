"""The recipe's head initialisation, the ablation configs (what each changes, every component
registered) and Mixup / CutMix batches training and resuming (they draw from numpy's global
generator)."""
import math
import os
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import FUNCTIONS  # collate functions: MMEngine's own

from mmpretrain import registry

from helpers import (REPO, TINY_CONFIG, assert_same_weights, final_weights, run_logs,
                     train_tiny)

REFERENCE = osp.join(REPO, 'configs', 'bio_resnext.py')
DEMO = osp.join(REPO, 'configs', 'bio_resnext50_plankton_cpu.py')
ABLATIONS = osp.join(REPO, 'configs', 'ablation')
TINY_MIX = osp.join(REPO, 'tests', 'configs', 'bio_tiny_mix.py')


def flat(value, prefix=''):
    """``{'model.head.num_classes': 100, ...}``; lists by index."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value}
    out = {}
    for key, item in items:
        out.update(flat(item, f'{prefix}.{key}' if prefix else str(key)))
    return out


def delta(base: str, child: str) -> dict:
    """The keys whose values differ between two configs, with the child's values."""
    parent, derived = (flat(Config.fromfile(path).to_dict()) for path in (base, child))
    return {key: derived.get(key) for key in parent.keys() | derived.keys()
            if parent.get(key) != derived.get(key)}


def test_the_recipe_head_starts_small_and_each_ablation_changes_one_thing():
    assert Config.fromfile(REFERENCE).model.head.classifier_std == 0.01
    assert delta(DEMO, osp.join(ABLATIONS, 'plankton_cpu_kaiming_head.py')) == {
        'model.head.classifier_std': None}
    cosine = delta(DEMO, osp.join(ABLATIONS, 'plankton_cpu_cosine.py'))
    assert cosine and all(key.startswith('param_scheduler') for key in cosine)
    mix = delta(osp.join(ABLATIONS, 'plankton_cpu_cosine.py'),
                osp.join(ABLATIONS, 'plankton_cpu_cosine_mix.py'))
    assert mix and all(key.startswith('model.train_cfg.augments') for key in mix)
    assert mix == {key: value for key, value in delta(TINY_CONFIG, TINY_MIX).items()}


def component_types(value):
    if isinstance(value, dict):
        if isinstance(value.get('type'), str):
            yield value['type']
        for item in value.values():
            yield from component_types(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from component_types(item)


REGISTRIES = [registry.MODELS, registry.HOOKS, registry.DATASETS, registry.TRANSFORMS,
              registry.METRICS, registry.PARAM_SCHEDULERS, registry.OPTIMIZERS,
              registry.OPTIM_WRAPPERS, registry.RUNNERS, registry.LOOPS, registry.DATA_SAMPLERS,
              registry.VISUALIZERS, registry.VISBACKENDS, registry.LOG_PROCESSORS,
              registry.BATCH_AUGMENTS, registry.WEIGHT_INITIALIZERS, FUNCTIONS]


@pytest.mark.parametrize('config', [REFERENCE, TINY_MIX] + [
    osp.join(ABLATIONS, name) for name in sorted(os.listdir(ABLATIONS)) if name.endswith('.py')])
def test_every_component_of_the_variant_configs_is_registered(config):
    cfg = Config.fromfile(config)
    types = set(component_types(cfg.to_dict()))
    assert {'BioClsHead', 'EpochEndCheckpointHook'} <= types
    missing = [name for name in types if not any(reg.get(name) for reg in REGISTRIES)]
    assert not missing, missing


@pytest.mark.slow
def test_mixup_trains_on_the_tiny_fixture_from_a_loss_of_ln_c_and_resumes_to_the_same_weights(
        tmp_path, data):
    whole = train_tiny(data, tmp_path / 'whole', config=TINY_MIX, epochs=2)
    assert whole.returncode == 0, whole.stderr[-3000:]
    first_loss = float(re.search(r'Epoch\(train\) \[1\]\[1/\d+\].*?loss: ([\d.]+)',
                                 run_logs(tmp_path / 'whole')[0]).group(1))
    assert first_loss == pytest.approx(math.log(3), rel=0.2)  # the small head, not ~20
    cut = train_tiny(data, tmp_path / 'cut', config=TINY_MIX, epochs=1)
    assert cut.returncode == 0, cut.stderr[-3000:]
    resumed = train_tiny(data, tmp_path / 'cut', '--resume', config=TINY_MIX, epochs=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(final_weights(tmp_path / 'whole', 2), final_weights(tmp_path / 'cut', 2))
