import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import nn

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from helpers import RECIPE_CONFIG


@pytest.fixture(scope='module')
def recipe_model():
    cfg = Config.fromfile(RECIPE_CONFIG)
    cfg.model.backbone.init_cfg = None  # no download: the structure is what is tested
    return MODELS.build(cfg.model)


def test_recipe_builds_resnext101_32x8d_with_the_seed_head(recipe_model):
    backbone = recipe_model.backbone
    assert type(backbone).__name__ == 'ResNeXt'
    assert (backbone.depth, backbone.groups, backbone.width_per_group) == (101, 32, 8)

    layers = list(recipe_model.head.layers)
    assert [type(layer) for layer in layers] == [
        nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert layers[0].p == 0.3 and layers[4].p == 0.5
    assert (layers[1].in_features, layers[1].out_features) == (2048, 512)
    assert layers[3].num_features == 512
    assert (layers[5].in_features, layers[5].out_features) == (512, 100)

    backbone_params = sum(p.numel() for p in backbone.parameters())
    head_params = sum(p.numel() for p in recipe_model.head.parameters())
    assert round(backbone_params / 1e6, 2) == 86.74
    assert head_params == 2048 * 512 + 512 + 2 * 512 + 512 * 100 + 100
    assert backbone_params + head_params < 100e6


def test_head_init_is_kaiming_normal_fan_out_with_zero_bias():
    torch.manual_seed(0)
    head = MODELS.build(dict(type='BioClsHead', num_classes=100, in_channels=2048))
    head.init_weights()
    for linear in (head.layers[1], head.layers[5]):
        expected_std = math.sqrt(2.0 / linear.out_features)  # fan_out, relu gain
        assert linear.weight.std().item() == pytest.approx(expected_std, rel=0.05)
        assert torch.count_nonzero(linear.bias) == 0


def test_classifier_std_gives_logits_near_zero_and_a_first_loss_of_ln_c():
    """The plus recipe's last-layer init: N(0, 0.01²); the first layer keeps Kaiming. The
    reference's init starts the loss an order of magnitude higher."""
    torch.manual_seed(0)
    feats = (torch.randn(64, 2048).relu(), )
    labels = torch.arange(64) % 6
    losses = {}
    for std in (None, 0.01):
        head = MODELS.build(dict(type='BioClsHead', num_classes=6, in_channels=2048,
                                 classifier_std=std))
        head.init_weights()
        head.train()
        losses[std] = F.cross_entropy(head(feats), labels).item()
        if std:
            assert head.layers[5].weight.std().item() == pytest.approx(std, rel=0.05)
            assert torch.count_nonzero(head.layers[5].bias) == 0
            assert head.layers[1].weight.std().item() == pytest.approx(
                math.sqrt(2.0 / 512), rel=0.05)
    assert losses[0.01] == pytest.approx(math.log(6), rel=0.05)
    assert losses[None] > 3 * math.log(6)


@pytest.mark.parametrize('std', [0, -0.1, float('nan')])
def test_classifier_std_must_be_positive(std):
    with pytest.raises(ValueError, match='classifier_std'):
        MODELS.build(dict(type='BioClsHead', num_classes=3, in_channels=8, classifier_std=std))


def test_head_pre_logits_is_the_512d_feature_and_forward_matches_the_layers():
    head = MODELS.build(dict(type='BioClsHead', num_classes=7, in_channels=64)).eval()
    feats = (torch.randn(5, 64), )
    pre_logits = head.pre_logits(feats)
    assert pre_logits.shape == (5, 512)
    layers = head.layers
    expected = layers[3](torch.relu(layers[1](feats[0])))  # dropouts are identity in eval
    torch.testing.assert_close(pre_logits, expected)
    torch.testing.assert_close(head(feats), layers[5](expected))


def test_head_computes_float32_logits_under_bfloat16_autocast():
    torch.manual_seed(0)
    head = MODELS.build(dict(type='BioClsHead', num_classes=100, in_channels=64)).eval()
    feats = (torch.randn(16, 64).bfloat16(), )  # what a bfloat16 backbone hands over
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits = head(feats)
        scores = head.predict(feats)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, head(tuple(f.float() for f in feats)))
    scores = torch.stack([sample.pred_score for sample in scores])
    assert scores.dtype == torch.float32
    # 100 near-uniform classes: bfloat16 scores would tie, float32 ones do not
    assert all(len(set(row.tolist())) == 100 for row in scores)
    assert any(len(set(row.bfloat16().tolist())) < 100 for row in scores)


def test_recipe_loss_is_cross_entropy_with_label_smoothing_0_1():
    cfg = Config.fromfile(RECIPE_CONFIG)
    loss_module = MODELS.build(cfg.model.head.loss)
    logits = torch.randn(8, 100)
    labels = torch.randint(0, 100, (8, ))
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss_module(logits, labels), expected)


def test_head_loss_trains_through_the_classifier():
    head = MODELS.build(dict(type='BioClsHead', num_classes=3, in_channels=16,
                             loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')))
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    losses = head.loss((torch.randn(4, 16), ), samples)
    losses['loss'].backward()
    assert head.layers[1].weight.grad is not None
