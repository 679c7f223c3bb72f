"""The stem and stages of a backbone, by module, for freezing the first of them
(``tools/train.py --freeze-stages``).

A registered MMPretrain backbone whose constructor takes ``frozen_stages`` freezes itself; its
range is what its own freezing code accepts. MMPretrain's ``TIMMBackbone`` has the stages timm
describes: ``group_matcher(coarse=True)`` groups the stem and the stages (with what timm groups
into the last stage, e.g. EfficientNet's ``conv_head``), and ``feature_info`` names the last
stage's module. bioplugin's ``TorchvisionBackbone`` has them in the model's layout
(:meth:`TorchvisionBackbone.stage_modules`). ``FreezeBackboneStagesHook`` freezes the latter two.
"""
import copy
import inspect
from itertools import chain
from typing import List, NamedTuple

import torch

from mmpretrain.registry import MODELS

from ...errors import ConfigError

HOOK_FIX = ('use a registered MMPretrain backbone that takes frozen_stages, a TIMMBackbone or a '
            'TorchvisionBackbone of a model with stages, or train without --freeze-stages')


class FrozenStages(NamedTuple):
    modules: List[str]  # the outermost frozen modules (or loose parameters), for the log
    norms: List[torch.nn.Module]  # BatchNorm layers to keep in eval mode


def _name(backbone) -> str:
    timm_cfg = getattr(getattr(backbone, 'timm_model', None), 'pretrained_cfg', None) or {}
    return _describe(type(backbone).__name__,
                     getattr(backbone, 'model_name', None) or timm_cfg.get('architecture'))


def _describe(kind: str, model_name=None) -> str:
    kind = kind.rpartition('.')[2]
    return f'{kind}({model_name})' if model_name else kind


def _tensor_names(module: torch.nn.Module, prefix: str = '') -> List[str]:
    return [prefix + name for name, _ in chain(module.named_parameters(),
                                               module.named_buffers())]


def _timm_stages(backbone) -> List[List[str]]:
    from timm.models._manipulate import group_with_matcher
    model = backbone.timm_model
    matcher = model.group_matcher(coarse=True) if hasattr(model, 'group_matcher') else None
    feature_info = getattr(model, 'feature_info', None)
    if not (isinstance(matcher, dict) and next(iter(matcher), None) == 'stem'
            and isinstance(feature_info, list) and feature_info):
        raise ConfigError(f'{_name(backbone)} has no stem and stages that timm describes '
                          f'(group_matcher and feature_info); {HOOK_FIX}.')
    named = chain(model.named_parameters(), model.named_buffers())
    group_of = group_with_matcher(named, matcher, reverse=True)
    last = feature_info[-1]['module'] + '.'
    last_stage = max(group for name, group in group_of.items() if name.startswith(last))
    groups = [[] for _ in range(last_stage + 1)]
    for name, group in group_of.items():
        if group <= last_stage:
            groups[group].append('timm_model.' + name)
    return groups


def backbone_stages(backbone: torch.nn.Module) -> List[List[str]]:
    """The tensor names (parameters and buffers) of the stem (first) and of each stage."""
    if hasattr(backbone, 'timm_model'):
        return _timm_stages(backbone)
    if hasattr(backbone, 'stage_modules'):
        return [list(chain.from_iterable(_tensor_names(backbone.get_submodule(name), name + '.')
                                         for name in group))
                for group in backbone.stage_modules()]
    raise ConfigError(f'{_name(backbone)} has no stages bioplugin can find; {HOOK_FIX}.')


def _check_range(name: str, stages: int, count: int) -> None:
    if not -1 <= stages <= count:
        raise ConfigError(f'--freeze-stages must be between -1 (none) and {count} for '
                          f'{name} (0: stem only).')


def freeze_backbone_stages(backbone: torch.nn.Module, stages: int) -> FrozenStages:
    """Stop the gradients of the stem and the first ``stages`` stages; returns what was
    frozen and its BatchNorm layers (the caller keeps those in eval mode)."""
    groups = backbone_stages(backbone)
    _check_range(_name(backbone), stages, len(groups) - 1)
    frozen = set(chain.from_iterable(groups[:stages + 1]))
    for name, param in backbone.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    whole = {name: module for name, module in backbone.named_modules()
             if name and _tensor_names(module)
             and frozen.issuperset(_tensor_names(module, name + '.'))}
    outermost = [name for name in whole if name.rpartition('.')[0] not in whole]
    loose = [name for name in frozen
             if not any(name.startswith(module + '.') for module in outermost)]
    norms = [module for module in whole.values()
             if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    return FrozenStages(outermost + sorted(loose), norms)


def takes_frozen_stages(backbone_cfg: dict) -> bool:
    """Whether the backbone's constructor has a ``frozen_stages`` argument of its own."""
    parameters = inspect.signature(MODELS.get(backbone_cfg['type']).__init__).parameters
    return 'frozen_stages' in parameters


def _build(backbone_cfg: dict, **options) -> torch.nn.Module:
    """The backbone without its pretrained weights, to look at its stages."""
    backbone_cfg = dict(copy.deepcopy(backbone_cfg), init_cfg=None, **options)
    if backbone_cfg['type'].rpartition('.')[2] == 'TIMMBackbone':
        backbone_cfg.update(pretrained=False, checkpoint_path='')
    return MODELS.build(backbone_cfg)


def _freezes(backbone_cfg: dict, stages: int) -> bool:
    """Whether the backbone accepts ``frozen_stages=stages`` (its constructor and its freezing,
    which ``train()`` applies, judge)."""
    try:
        _build(backbone_cfg, frozen_stages=stages).train()
    except (ValueError, AssertionError, AttributeError, IndexError, KeyError):
        return False
    return True


def check_freeze_stages(backbone_cfg: dict, stages: int) -> None:
    """Raise one sentence when the backbone has not that many stages, or none to be found."""
    if stages < -1:
        raise ConfigError('--freeze-stages must be -1 (none), 0 (stem only) or more.')
    if takes_frozen_stages(backbone_cfg):
        if _freezes(backbone_cfg, stages):
            return
        low, high = -1, stages  # -1 always fits: the most that fits, by bisection
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if _freezes(backbone_cfg, middle) else (low, middle)
        _check_range(_describe(backbone_cfg['type']), stages, low)
    elif stages >= 0:
        backbone = _build(backbone_cfg)
        _check_range(_name(backbone), stages, len(backbone_stages(backbone)) - 1)
