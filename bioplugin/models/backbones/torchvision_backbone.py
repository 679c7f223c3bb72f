from typing import List, Tuple

import torch
from mmengine.model import BaseModule

from mmpretrain.registry import MODELS

from ...errors import ConfigError

# where torchvision's classification models keep their ImageNet classifier
CLASSIFIER_ATTRIBUTES = ('fc', 'classifier', 'heads', 'head')


@MODELS.register_module()
class TorchvisionBackbone(BaseModule):
    """A torchvision classification model by name, its ImageNet classifier removed.

    The model is kept as ``torchvision_model`` (torchvision checkpoints load into it as they
    are); ``forward`` returns its pooled feature ``(N, C)``, so the config has no neck. ImageNet weights come from ``init_cfg`` like any backbone's, checked
    key by key (:mod:`bioplugin.engine.pretrained`)::

        model = dict(
            backbone=dict(type='TorchvisionBackbone', model_name='efficientnet_b0',
                          init_cfg=dict(type='Pretrained',
                                        checkpoint='torchvision://efficientnet_b0.imagenet1k_v1')),
            neck=None,
            head=dict(in_channels=1280))
    """

    def __init__(self, model_name: str, init_cfg=None, **kwargs):
        super().__init__(init_cfg=init_cfg)
        import torchvision
        try:
            model = torchvision.models.get_model(model_name, weights=None, **kwargs)
        except ValueError:
            raise ValueError(
                f'TorchvisionBackbone: torchvision has no model {model_name!r}; see '
                'torchvision.models.list_models(module=torchvision.models).') from None
        classifier = next((name for name in CLASSIFIER_ATTRIBUTES
                           if isinstance(getattr(model, name, None), torch.nn.Module)), None)
        if classifier is None:
            raise ValueError(f'TorchvisionBackbone: {model_name} has none of '
                             f'{", ".join(CLASSIFIER_ATTRIBUTES)} to remove.')
        setattr(model, classifier, torch.nn.Identity())
        self.model_name = model_name
        self.torchvision_model = model

    def stage_modules(self) -> List[List[str]]:
        """The stem's modules, then each stage's, for ``--freeze-stages``: a ResNet-like model's
        ``conv1``, ``bn1`` and ``layer1`` … ``layer4``; a model of ``features`` (EfficientNet,
        MobileNet, ConvNeXt, VGG…) its first child, then every other child as a stage (the
        last, e.g. EfficientNet's 1×1 head convolution, included). Other layouts (ViT, Swin,
        RegNet…) have no stages here: ``--freeze-stages`` says so."""
        model, prefix = self.torchvision_model, 'torchvision_model.'
        if all(hasattr(model, name) for name in ('conv1', 'bn1', 'layer1')):
            stages = [name for name in ('layer1', 'layer2', 'layer3', 'layer4')
                      if hasattr(model, name)]
            return [[prefix + 'conv1', prefix + 'bn1']] + [[prefix + name] for name in stages]
        if isinstance(getattr(model, 'features', None), torch.nn.Sequential):
            return [[f'{prefix}features.{index}'] for index in range(len(model.features))]
        from .stages import HOOK_FIX
        raise ConfigError(f'TorchvisionBackbone({self.model_name}) has neither layer1 … layer4 '
                          f'nor a features sequence to freeze by stage; {HOOK_FIX}.')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.torchvision_model(x), )
