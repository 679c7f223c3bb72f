"""Backbones other than ResNet: a timm model (MMPretrain's TIMMBackbone), a registered
MMPretrain backbone (VisionTransformer, MobileNetV2) and a torchvision model by name. Their
ImageNet weights load in the layout they are published in, checked key by key (a wrong key
stops the run, naming it, with no ``prefix``), and they train, resume, test, export and report
like the recipe's ResNeXt."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from bioplugin.engine.pretrained import resolve_pretrained
from bioplugin.errors import CheckpointError
from bioplugin.models import build_model

from helpers import TINY_CONFIG, run_logs, run_tool

LITE0 = dict(type='TIMMBackbone', model_name='tf_efficientnet_lite0')
# a small VisionTransformer: no convolution after the patch embedding, so no Grad-CAM layer
VIT = dict(type='VisionTransformer', img_size=224, patch_size=32, out_type='cls_token',
           arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))
MOBILENET = dict(type='MobileNetV2', widen_factor=0.35)


def timm_weights(path) -> dict:
    """timm's own state_dict of tf_efficientnet_lite0 (random weights), classifier included,
    as a timm / Hugging Face checkpoint holds it."""
    import timm
    torch.manual_seed(0)
    state = timm.create_model('tf_efficientnet_lite0', pretrained=False).state_dict()
    torch.save(state, path)
    return state


def registered_weights(backbone_cfg: dict, path) -> dict:
    """A bare state_dict of a registered MMPretrain backbone, as published backbone files are."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(1)
    state = MODELS.build(backbone_cfg).state_dict()
    state = {key: torch.randn_like(value) if value.is_floating_point() else value
             for key, value in state.items()}
    torch.save(state, path)
    return state


def config_with(backbone: dict, in_channels: int, neck=dict(type='GlobalAveragePooling'),
                checkpoint=None) -> Config:
    cfg = Config.fromfile(TINY_CONFIG)
    init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint)) if checkpoint else None
    cfg.model.backbone = dict(backbone, init_cfg=init_cfg)
    cfg.model.neck = neck
    cfg.model.head.in_channels = in_channels
    return cfg


def test_timm_weights_load_into_timm_backbone_without_a_prefix(tmp_path):
    state = timm_weights(tmp_path / 'lite0.pth')
    model = build_model(config_with(LITE0, 1280, checkpoint=tmp_path / 'lite0.pth'))
    assert resolve_pretrained(model) == {'model.backbone.init_cfg': str(tmp_path / 'lite0.pth')}
    model.init_weights()
    loaded = model.backbone.timm_model.state_dict()
    assert set(loaded) == set(state) - {'classifier.weight', 'classifier.bias'}
    for key in ('conv_stem.weight', 'blocks.6.0.conv_pwl.weight', 'bn2.running_var'):
        torch.testing.assert_close(loaded[key], state[key])


def test_our_own_checkpoint_of_a_timm_model_loads_as_backbone_weights(tmp_path):
    """A bioplugin / MMPretrain checkpoint keeps them as ``backbone.timm_model.*``."""
    state = timm_weights(tmp_path / 'lite0.pth')
    wrapped = {f'backbone.timm_model.{key}': value for key, value in state.items()
               if not key.startswith('classifier.')}
    wrapped['head.layers.5.weight'] = torch.zeros(3, 16)
    torch.save({'state_dict': wrapped, 'meta': {}}, tmp_path / 'ours.pth')
    model = build_model(config_with(LITE0, 1280, checkpoint=tmp_path / 'ours.pth'))
    resolve_pretrained(model)
    torch.testing.assert_close(model.backbone.timm_model.conv_head.weight,
                               state['conv_head.weight'])


@pytest.mark.parametrize('backbone,in_channels,neck', [
    (LITE0, 1280, dict(type='GlobalAveragePooling')),
    (MOBILENET, 1280, dict(type='GlobalAveragePooling')),
    (VIT, 32, None)])
def test_a_weights_file_with_a_wrong_key_stops_naming_it(tmp_path, backbone, in_channels, neck):
    path = tmp_path / 'weights.pth'
    if backbone is LITE0:
        state = timm_weights(path)
    else:
        state = registered_weights(backbone, path)
    renamed = sorted(key for key in state if key.endswith('.weight'))[3]
    state['renamed.' + renamed] = state.pop(renamed)
    torch.save(state, path)
    model = build_model(config_with(backbone, in_channels, neck, checkpoint=path))
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained(model)
    message = str(error.value)
    wrapped = ('timm_model.' if backbone is LITE0 else '')
    assert f'1 tensors missing: {wrapped}{renamed}' in message
    assert f'1 tensors unknown to this backbone: {wrapped}renamed.{renamed}' in message
    assert len(message.splitlines()) == 1


def test_torchvision_backbone_by_name_takes_torchvision_weights(tmp_path):
    import torchvision
    torch.manual_seed(2)
    reference = torchvision.models.mobilenet_v3_small(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / 'mobilenet_v3_small.pth')
    model = build_model(config_with(
        dict(type='TorchvisionBackbone', model_name='mobilenet_v3_small'), 576, neck=None,
        checkpoint=tmp_path / 'mobilenet_v3_small.pth'))
    resolve_pretrained(model)
    model.init_weights()
    model.eval()
    x = torch.rand(2, 3, 96, 96)
    reference.classifier = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.extract_feat(x)[-1], reference(x))
    with pytest.raises(ValueError, match="torchvision has no model 'mobilenet_v9'"):
        build_model(config_with(dict(type='TorchvisionBackbone', model_name='mobilenet_v9'),
                                576, neck=None))


# ---------------------------------------------------------------- end to end

def write_config(tmp_path, name: str, backbone: dict, in_channels: int, neck, weights) -> str:
    path = tmp_path / f'{name}.py'
    path.write_text('\n'.join([
        f'_base_ = [{TINY_CONFIG!r}]',
        f'model = dict(backbone=dict(_delete_=True, init_cfg=dict(type="Pretrained", '
        f'checkpoint={str(weights)!r}), **{backbone!r}), neck={neck!r}, '
        f'head=dict(in_channels={in_channels}))',
        '']))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['timm_lite0', 'registered_vit'])
def test_other_backbones_train_resume_test_export_and_report(tmp_path, data, name):
    weights = tmp_path / 'imagenet.pth'
    if name == 'timm_lite0':
        timm_weights(weights)
        config = write_config(tmp_path, name, LITE0, 1280, dict(type='GlobalAveragePooling'),
                              weights)
    else:
        registered_weights(VIT, weights)
        config = write_config(tmp_path, name, VIT, 32, None, weights)
    work_dir = tmp_path / 'work'

    def tool(*args):
        result = run_tool(*args)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    tool('tools/train.py', config, '--data-root', data, '--work-dir', str(work_dir),
         '--cfg-options', 'train_cfg.max_epochs=1')
    log = run_logs(work_dir)[0]
    assert re.search(r'model\.backbone\.init_cfg: pretrained weights \S*imagenet\.pth \(keys '
                     + ("under 'timm_model\\.'" if name == 'timm_lite0' else 'as they are'), log)
    first_loss = float(re.search(r'Epoch\(train\) \[1\]\[1/\d+\].*?loss: ([\d.]+)', log).group(1))
    assert first_loss < 2.5  # ln 3 ≈ 1.1 plus label smoothing: the small head, not ~20
    tool('tools/train.py', config, '--data-root', data, '--work-dir', str(work_dir),
         '--resume', '--cfg-options', 'train_cfg.max_epochs=2')
    assert osp.isfile(work_dir / 'epoch_2.pth')
    csv = str(tmp_path / 'prediction.csv')
    tool('tools/test.py', config, str(work_dir), '--csv', csv, '--data-root', data)
    assert len(open(csv).read().splitlines()) == 1 + 3  # header and the 3 test images
    onnx = str(tmp_path / 'model.onnx')
    tool('tools/deploy/export_onnx.py', config, str(work_dir), '--out', onnx, '--data-root', data)
    onnx_csv = str(tmp_path / 'prediction_onnx.csv')
    tool('tools/test.py', config, onnx, '--csv', onnx_csv, '--data-root', data)
    assert open(onnx_csv).read().splitlines()[0] == open(csv).read().splitlines()[0]
    tool('tools/analysis/report.py', str(work_dir), '--gradcam-images', '2')
    page = open(work_dir / 'report' / 'report.html').read()
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    for figure in ('training_curves.png', 'confusion_matrix.png', 'per_class.png'):
        assert figure in linked, figure
    if name == 'timm_lite0':
        assert 'gradcam.png' in linked
    else:  # no convolution to explain: that one figure is missing, and said so
        assert 'gradcam.png' not in linked
        assert 'not drawn: Grad-CAM needs a convolutional backbone' in page


def test_a_transformer_has_no_gradcam_layer_a_timm_cnn_has_one():
    from bioplugin.analysis.gradcam import last_backbone_stage
    from bioplugin.errors import ConfigError
    vit = build_model(config_with(VIT, 32, neck=None))
    with pytest.raises(ConfigError, match=r'the last convolution of VisionTransformer '
                                          r'\(patch_embed\) is followed by layers without one'):
        last_backbone_stage(vit)
    lite0 = build_model(config_with(LITE0, 1280))
    assert last_backbone_stage(lite0) is lite0.backbone.timm_model.conv_head


def test_safetensors_weights_as_the_hub_publishes_them(tmp_path):
    from safetensors.torch import save_file
    state = timm_weights(tmp_path / 'lite0.pth')
    save_file(state, str(tmp_path / 'model.safetensors'))
    model = build_model(config_with(LITE0, 1280, checkpoint=tmp_path / 'model.safetensors'))
    resolve_pretrained(model)
    torch.testing.assert_close(model.backbone.timm_model.conv_stem.weight,
                               state['conv_stem.weight'])
    (tmp_path / 'cut.safetensors').write_bytes(
        (tmp_path / 'model.safetensors').read_bytes()[:1000])
    model = build_model(config_with(LITE0, 1280, checkpoint=tmp_path / 'cut.safetensors'))
    with pytest.raises(CheckpointError, match='is not a readable safetensors file'):
        resolve_pretrained(model)
