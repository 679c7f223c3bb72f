"""ImageNet initialisation without a network: torchvision and MMPretrain checkpoints made here."""
import os
import os.path as osp

import pytest
import torch
import torchvision
from mmengine.config import Config

from bioplugin.apis import load_config
from bioplugin.engine import pretrained
from bioplugin.engine.pretrained import resolve_pretrained
from bioplugin.errors import CheckpointError, ConfigError
from bioplugin.models import build_model

from helpers import REPO, RECIPE_CONFIG, make_image_folder, pretrained_model, run_tool


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))


@pytest.fixture(scope='module')
def torchvision_resnext():
    """torchvision's ResNeXt101_32x8d with random weights and random BatchNorm statistics."""
    torch.manual_seed(0)
    model = torchvision.models.resnext101_32x8d(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.2, 0.6)  # keeps activations finite through 101 layers
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


def _recipe_with_weights(checkpoint):
    cfg = Config.fromfile(RECIPE_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    return pretrained_model(cfg)


def _assert_same_features(model, torchvision_model):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.extract_feat(x)[-1]  # backbone + global average pooling: (2, 2048)
        fc = torchvision_model.fc
        torchvision_model.fc = torch.nn.Identity()
        theirs = torchvision_model(x)
        torchvision_model.fc = fc
    assert ours.shape == theirs.shape == (2, 2048)
    assert theirs.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_torchvision_state_dict_gives_torchvision_features(torchvision_resnext, tmp_path):
    path = str(tmp_path / 'resnext101_32x8d-random.pth')
    torch.save(torchvision_resnext.state_dict(), path)
    _assert_same_features(_recipe_with_weights(path), torchvision_resnext)


def test_mmpretrain_checkpoint_with_backbone_prefix_gives_the_same(torchvision_resnext,
                                                                   tmp_path):
    state = {f'backbone.{k}': v for k, v in torchvision_resnext.state_dict().items()
             if not k.startswith('fc.')}
    state['head.fc.weight'] = torch.zeros(1000, 2048)
    path = str(tmp_path / 'mmpretrain-style.pth')
    torch.save({'state_dict': state, 'meta': {'epoch': 100}}, path)
    _assert_same_features(_recipe_with_weights(path), torchvision_resnext)


def test_a_checkpoint_of_another_architecture_lists_the_mismatched_keys(tmp_path):
    path = str(tmp_path / 'resnet50.pth')
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    cfg = Config.fromfile(RECIPE_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = path
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained(build_model(cfg))
    message = str(error.value)
    assert 'resnet50.pth' in message and '176 tensors of another shape' in message
    assert 'layer1.0.conv1.weight [64, 64, 1, 1] vs [256, 64, 1, 1]' in message
    assert '255 tensors missing: layer3.10.' in message  # layer3: 6 blocks vs 23


def test_torchvision_weights_load_as_they_are_without_a_converted_copy(torchvision_resnext,
                                                                        tmp_path):
    path = str(tmp_path / 'tv.pth')
    torch.save(torchvision_resnext.state_dict(), path)
    cfg = Config.fromfile(RECIPE_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = path
    model = build_model(cfg)
    assert resolve_pretrained(model) == {'model.backbone.init_cfg': path}
    # loaded, checked, and left alone by init_weights (which would redraw a ResNet's weights)
    assert model.backbone.is_init
    model.init_weights()
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight,
                               torchvision_resnext.layer4[2].conv3.weight)
    assert not osp.exists(osp.join(torch.hub.get_dir(), 'checkpoints'))


def _torchvision_name_in_cache(name: str, model) -> str:
    """Put ``model``'s weights where a download of torchvision:// ``name`` would go."""
    from mmengine.runner.checkpoint import get_torchvision_models
    cached = pretrained.cached_checkpoint_path(get_torchvision_models()[name])
    os.makedirs(osp.dirname(cached), exist_ok=True)
    torch.save(model.state_dict(), cached)
    return cached


@pytest.mark.slow
def test_the_demo_starts_from_cached_imagenet_weights_else_from_scratch():
    """make demo: torchvision's ResNeXt-50 weights from the hub cache (a local file here)."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'bio_resnext50_plankton_cpu.py'))
    init_cfg = cfg.model.backbone.init_cfg
    assert (init_cfg.checkpoint, init_cfg.if_unavailable) == (
        'torchvision://resnext50_32x4d.imagenet1k_v2', 'scratch')
    torch.manual_seed(0)
    scratch = build_model(cfg)
    resolve_pretrained(scratch)  # nothing cached, no network: from scratch, said so
    assert scratch.backbone.init_cfg is None
    torchvision_model = torchvision.models.resnext50_32x4d(weights=None).eval()
    cached = _torchvision_name_in_cache('resnext50_32x4d.imagenet1k_v2', torchvision_model)
    _assert_same_features(pretrained_model(cfg), torchvision_model)
    assert pretrained_model(cfg).backbone.init_cfg['checkpoint'] == cached


def test_known_name_offline_explains_url_cache_path_and_from_scratch(monkeypatch):
    url = 'http://127.0.0.1:9/resnext101_32x8d-110c445d.pth'
    monkeypatch.setitem(pretrained.KNOWN_CHECKPOINTS, 'torchvision_v2', url)
    cfg = load_config(RECIPE_CONFIG)
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained(build_model(cfg))
    message = str(error.value)
    assert url in message
    assert osp.join(torch.hub.get_dir(), 'checkpoints', 'resnext101_32x8d-110c445d.pth') in message
    assert '--cfg-options model.backbone.init_cfg=None' in message


@pytest.mark.slow
def test_train_offline_is_one_line_without_traceback(tmp_path):
    data = make_image_folder(str(tmp_path / 'data'), ['a', 'b', 'c'], per_class=4)
    result = run_tool(osp.join('tools', 'train.py'), RECIPE_CONFIG, '--data-root', data,
                      '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                      'model.head.num_classes=3', 'train_dataloader.batch_size=4',
                      'model.backbone.init_cfg.checkpoint=http://127.0.0.1:9/weights.pth')
    assert result.returncode == 2
    message = result.stderr.strip()
    assert 'Traceback' not in message and len(message.splitlines()) == 1
    assert message.startswith('error: Cannot download the pretrained weights '
                              'http://127.0.0.1:9/weights.pth')
    assert '--cfg-options model.backbone.init_cfg=None' in message


@pytest.mark.slow
def test_convert_tool_reports_taken_and_dropped_keys(torchvision_resnext, tmp_path):
    source, output = str(tmp_path / 'tv.pth'), str(tmp_path / 'backbone.pth')
    torch.save(torchvision_resnext.state_dict(), source)
    result = run_tool(osp.join('tools', 'convert_weights.py'), source, output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ('keys as they are: 624 tensors taken, dropped fc.bias, fc.weight, missing none'
            in result.stdout)
    _assert_same_features(_recipe_with_weights(output), torchvision_resnext)


def test_freeze_stages_and_head_lr_multiplier(tmp_path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from bioplugin.apis import build_train_config
    from helpers import TINY_CONFIG
    cfg = build_train_config(TINY_CONFIG, freeze_stages=2, head_lr_mult=10)
    init_default_scope(cfg.default_scope)  # as the Runner does
    model = build_model(cfg)
    model.init_weights()
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {group['lr'] for group in optim_wrapper.optimizer.param_groups
           if any(p is q for p in group['params'] for q in model.head.parameters())}
    assert len(lrs) == 1 and lrs.pop() == pytest.approx(1e-2)
    backbone = model.backbone
    frozen = [backbone.conv1, backbone.layer1, backbone.layer2]
    assert not any(p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for p in backbone.layer3.parameters())
    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    loss = model(torch.randn(4, 3, 64, 64), mode='tensor').logsumexp(1).mean()
    optim_wrapper.update_params(loss)
    after = dict(backbone.named_parameters())
    assert torch.equal(before['layer1.0.conv1.weight'], after['layer1.0.conv1.weight'])
    assert not torch.equal(before['layer3.0.conv1.weight'], after['layer3.0.conv1.weight'])
    with pytest.raises(ConfigError, match='between -1'):
        build_train_config(TINY_CONFIG, freeze_stages=7)


def test_head_lr_multiplier_is_by_module_not_by_name():
    """A backbone parameter whose name contains "head" (EfficientNet's ``conv_head``) keeps
    the base learning rate; MMEngine's substring ``custom_keys`` would have sped it up."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from bioplugin.apis import build_train_config
    from helpers import TINY_CONFIG
    cfg = build_train_config(TINY_CONFIG, head_lr_mult=10)
    assert cfg.optim_wrapper.constructor == 'ModuleLrMultConstructor'
    init_default_scope(cfg.default_scope)
    model = build_model(cfg)
    model.backbone.conv_head = torch.nn.Conv2d(64, 64, 1)  # a backbone part named like a head
    base = cfg.optim_wrapper.optimizer.lr

    def lr_of(optim_wrapper, parameter):
        return next(group['lr'] for group in optim_wrapper.optimizer.param_groups
                    if any(p is parameter for p in group['params']))

    by_module = build_optim_wrapper(model, cfg.optim_wrapper)
    assert lr_of(by_module, model.backbone.conv_head.weight) == pytest.approx(base)
    assert lr_of(by_module, model.backbone.conv1.weight) == pytest.approx(base)
    head = list(model.head.parameters())
    assert head and all(lr_of(by_module, p) == pytest.approx(10 * base) for p in head)
    by_name = build_optim_wrapper(model, dict(
        cfg.optim_wrapper, constructor='DefaultOptimWrapperConstructor',
        paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)})))
    assert lr_of(by_name, model.backbone.conv_head.weight) == pytest.approx(10 * base)
    for bad, message in ((dict(heads=2.), 'names heads, not a module of the model'),
                         (dict(head=0), 'must be a positive number')):
        with pytest.raises(ConfigError, match=message):
            build_optim_wrapper(model, dict(cfg.optim_wrapper,
                                            paramwise_cfg=dict(module_lr_mult=bad)))
