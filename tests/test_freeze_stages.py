"""--freeze-stages by module, for backbones that take frozen_stages themselves (MobileNetV2)
and for those frozen by FreezeBackboneStagesHook (a timm model, a torchvision model)."""
import logging
from types import SimpleNamespace

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from bioplugin.apis.options import set_finetuning
from bioplugin.engine.hooks import FreezeBackboneStagesHook
from bioplugin.errors import ConfigError
from bioplugin.models import build_model

from test_other_backbones import LITE0, MOBILENET, config_with

MOBILENET_V3 = dict(type='TorchvisionBackbone', model_name='mobilenet_v3_small')
GAP = dict(type='GlobalAveragePooling')

# backbone, head in_channels, neck, stages, the stem's and first two stages' modules, a later
# stage's module
CASES = {
    'timm': (LITE0, 1280, GAP, 7, ['timm_model.conv_stem', 'timm_model.bn1',
                                   'timm_model.blocks.0', 'timm_model.blocks.1'],
             'timm_model.blocks.4'),
    'registered': (MOBILENET, 1280, GAP, 7, ['conv1', 'layer1', 'layer2'], 'layer5'),
    'torchvision': (MOBILENET_V3, 576, None, 12,
                    ['torchvision_model.features.0', 'torchvision_model.features.1',
                     'torchvision_model.features.2'], 'torchvision_model.features.8'),
}


def tensors(model, prefixes) -> dict:
    """Parameters and BatchNorm running statistics under the given module names."""
    state = model.backbone.state_dict()
    return {key: value.clone() for key, value in state.items()
            if any(key.startswith(prefix + '.') for prefix in prefixes)
            and value.is_floating_point()}


@pytest.mark.parametrize('case', sorted(CASES))
def test_the_stem_and_first_stages_stay_as_they_are(case, caplog):
    backbone, in_channels, neck, _, frozen, later = CASES[case]
    cfg = config_with(backbone, in_channels, neck)
    set_finetuning(cfg, freeze_stages=2)
    hooks = [FreezeBackboneStagesHook(stages=hook['stages'])
             for hook in cfg.get('custom_hooks') or ()
             if hook['type'] == 'FreezeBackboneStagesHook']
    if case == 'registered':
        assert cfg.model.backbone.frozen_stages == 2 and not hooks
    else:
        assert 'frozen_stages' not in cfg.model.backbone and [h.stages for h in hooks] == [2]
    init_default_scope(cfg.default_scope)  # as the Runner does
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    runner = SimpleNamespace(model=model, logger=logging.getLogger('freeze-test'))
    with caplog.at_level(logging.INFO, logger='freeze-test'):
        for hook in hooks:
            hook.before_train(runner)
    if hooks:
        assert f'froze the stem and the first 2 stages of the backbone: {", ".join(frozen)}' \
            in caplog.text
    model.train()  # as the loop does each epoch, after before_train_epoch
    for hook in hooks:
        hook.before_train_iter(runner, 0)
    before, before_later = tensors(model, frozen), tensors(model, [later])
    assert any('running_mean' in key for key in before)
    loss = model(torch.randn(4, 3, 64, 64), mode='tensor').logsumexp(1).mean()
    optim_wrapper.update_params(loss)
    after, after_later = tensors(model, frozen), tensors(model, [later])
    for key, value in before.items():
        if case == 'registered' and key.startswith('conv1.bn.running_'):
            # MMPretrain's MobileNetV2 stops the stem's weights but leaves its BatchNorm in
            # training mode (its _freeze_stages calls eval() on layer1.. only)
            continue
        assert torch.equal(value, after[key]), key
    for kind in ('weight', 'running_mean'):
        assert any(not torch.equal(value, after_later[key])
                   for key, value in before_later.items() if key.endswith(kind)), kind


@pytest.mark.parametrize('case', sorted(CASES))
def test_more_stages_than_the_backbone_has_is_one_sentence(case):
    backbone, in_channels, neck, stages, _, _ = CASES[case]
    cfg = config_with(backbone, in_channels, neck)
    with pytest.raises(ConfigError) as error:
        set_finetuning(cfg, freeze_stages=stages + 1)
    message = str(error.value)
    assert f'between -1 (none) and {stages} for ' in message and len(message.splitlines()) == 1
    set_finetuning(cfg, freeze_stages=stages)  # all of them is fine


def test_minus_one_freezes_nothing_and_a_model_without_stages_says_so():
    cfg = config_with(LITE0, 1280)
    set_finetuning(cfg, freeze_stages=1)
    set_finetuning(cfg, freeze_stages=-1)  # replaces the hook: none
    assert not any(hook['type'] == 'FreezeBackboneStagesHook' for hook in cfg.custom_hooks)
    vit = config_with(dict(type='TorchvisionBackbone', model_name='vit_b_16'), 768, None)
    with pytest.raises(ConfigError, match=r'vit_b_16\) has neither layer1 … layer4 nor a '
                                          'features sequence'):
        set_finetuning(vit, freeze_stages=1)


def test_resuming_with_another_count_is_refused():
    hook = FreezeBackboneStagesHook(stages=2)
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(None, checkpoint)
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)  # the same: fine
    with pytest.raises(ConfigError, match='resume with --freeze-stages 2'):
        FreezeBackboneStagesHook(stages=3).after_load_checkpoint(
            SimpleNamespace(_resume=True), checkpoint)
    # fine-tuning from another run's weights (load_from) may freeze otherwise
    FreezeBackboneStagesHook(stages=3).after_load_checkpoint(
        SimpleNamespace(_resume=False), checkpoint)
