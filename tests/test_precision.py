"""Precision choice: what 'auto' means on which hardware, and the flags that override it."""
import cv2
import numpy as np
import pytest
import torch

from bioplugin.apis import BioClassifier, build_train_config, load_config
from bioplugin.apis.cli import add_precision_options, precision_choice, tool_parser
from bioplugin.engine import precision as precision_module
from bioplugin.datasets.bio_dataset import scan_images
from bioplugin.engine.precision import cpu_has_native_bf16, resolve_precision
from bioplugin.engine.runner import resolve_config
from bioplugin.errors import ConfigError
from helpers import RECIPE_CONFIG, TINY_CONFIG, make_image_folder, run_tool


@pytest.mark.parametrize('flags,expected', [
    ('fpu sse avx512f avx512_bf16 amx_tile', True),
    ('fpu sse avx2 avx512f avx512bw', False),   # AVX512 without bfloat16: emulated, slow
    ('fp asimd bf16 sve', True),                 # Arm 'Features' line
])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    key = 'Features' if 'asimd' in flags else 'flags'
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(f'processor\t: 0\n{key}\t\t: {flags}\n')
    assert cpu_has_native_bf16(str(cpuinfo)) is expected
    assert cpu_has_native_bf16(str(tmp_path / 'missing')) is False


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: True)
    assert resolve_precision('auto', 'cpu') == 'bf16'
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: False)
    assert resolve_precision('auto', 'cpu') == 'fp32'
    recipe = build_train_config(RECIPE_CONFIG, work_dir='/tmp/bioplugin-test-workdir')
    assert recipe.precision == 'auto'  # resolved by BioRunner, for every tool alike
    assert resolve_config(recipe).precision == (
        'fp32' if not torch.cuda.is_available() else resolve_precision('auto', 'cuda'))
    assert resolve_precision('fp32', 'cpu') == 'fp32'
    with pytest.raises(ConfigError, match='float16 autocast needs a CUDA GPU'):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(ConfigError, match="precision='half'"):
        resolve_precision('half', 'cpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='float16 with loss scaling on a GPU')
def test_mmpretrains_amp_flag_becomes_bfloat16_autocast_on_cpu():
    # MMPretrain's tools/train.py --amp sets AmpOptimWrapper, which asserts CUDA
    cfg = build_train_config(RECIPE_CONFIG, work_dir='/tmp/bioplugin-test-workdir')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    resolved = resolve_config(cfg)
    assert resolved.precision == 'bf16'
    assert resolved.optim_wrapper.type == 'AutocastOptimWrapper'
    assert 'loss_scale' not in resolved.optim_wrapper
    assert resolved.val_cfg.fp16 is True and resolved.test_cfg.fp16 is True


def test_fp32_and_amp_flags_exclude_each_other():
    parser = tool_parser('x')
    add_precision_options(parser)
    assert precision_choice(parser.parse_args([])) is None
    assert precision_choice(parser.parse_args(['--fp32'])) == 'fp32'
    assert precision_choice(parser.parse_args(['--amp'])) in ('bf16', 'fp16')
    with pytest.raises(SystemExit):
        parser.parse_args(['--amp', '--fp32'])


@pytest.fixture(scope='module')
def trained_classifier_pair(tmp_path_factory):
    """A tiny model trained until it separates its classes, in float32 and in bfloat16."""
    tmp = tmp_path_factory.mktemp('precision')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=4,
                             test_images=40)
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
                      str(tmp / 'work'), '--cfg-options', 'train_cfg.max_epochs=6')
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = load_config(TINY_CONFIG, data_root=data)
    checkpoint = str(tmp / 'work' / 'epoch_6.pth')
    return data, (BioClassifier(cfg, checkpoint, device='cpu', precision='fp32'),
                  BioClassifier(cfg, checkpoint, device='cpu', precision='bf16'))


@pytest.mark.slow
def test_bfloat16_top1_agrees_with_float32_on_99_percent(trained_classifier_pair):
    data, (fp32, bf16) = trained_classifier_pair
    images = [cv2.imread(path) for path in scan_images(data, recursive=True)]
    images += [np.ascontiguousarray(image[:, ::-1]) for image in images]  # and mirrored
    assert len(images) >= 150
    reference, mixed = fp32.predict_scores(images), bf16.predict_scores(images)
    assert (reference.argmax(1) == reference.argmax(1)[0]).mean() < 0.5  # not one class
    agreement = (reference.argmax(1) == mixed.argmax(1)).mean()
    assert agreement >= 0.99, agreement
    assert np.abs(reference - mixed).max() < 0.05
    assert not np.array_equal(reference, mixed)  # bfloat16 really ran


@pytest.mark.slow
def test_bfloat16_inference_keeps_conv_weights_in_bfloat16_channels_last(
        trained_classifier_pair):
    _, (fp32, bf16) = trained_classifier_pair
    convs = [m for m in bf16.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    norms = [m for m in bf16.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(n.weight.dtype == torch.float32 for n in norms)
    assert all(p.dtype == torch.float32 for p in fp32.model.parameters())


@pytest.mark.slow
def test_float32_cpu_inference_gives_the_same_scores_in_either_layout(trained_classifier_pair):
    """Float32 prediction runs NCHW or channels-last, as the config's ``inference_layout``
    pins or a probe chooses (see test_inference_layout.py); a trained model's scores are the
    same in both."""
    data, (fp32, _) = trained_classifier_pair
    images = [cv2.imread(path) for path in scan_images(data, recursive=True)][:16]
    scores = {}
    for layout in ('channels_last', 'nchw'):
        classifier = BioClassifier(fp32.cfg, fp32.checkpoint_path, device='cpu',
                                   precision='fp32', inference_layout=layout)
        convs = [m.weight for m in classifier.model.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.weight.shape[2:] != (1, 1)]
        assert all(w.is_contiguous(memory_format=torch.channels_last)
                   and not w.is_contiguous() for w in convs) is (layout == 'channels_last')
        scores[layout] = classifier.predict_scores(images)
    assert (scores['nchw'].argmax(1) == scores['nchw'].argmax(1)[0]).mean() < 1  # not one class
    np.testing.assert_allclose(scores['channels_last'], scores['nchw'], atol=1e-5)
    np.testing.assert_allclose(fp32.predict_scores(images), scores['nchw'], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_classifier_owns_its_weights_once_loaded(trained_classifier_pair, tmp_path, precision):
    """The checkpoint is mapped while loading; afterwards the model must not depend on the
    file: overwriting it in place (same size) leaves the predictions as they were."""
    data, (fp32, _) = trained_classifier_pair
    checkpoint = tmp_path / 'copy.pth'
    checkpoint.write_bytes(open(fp32.checkpoint_path, 'rb').read())
    classifier = BioClassifier(fp32.cfg, str(checkpoint), device='cpu', precision=precision)
    images = scan_images(data, recursive=True)[:8]
    before = classifier.predict_scores(images)
    with open(checkpoint, 'r+b') as file:
        file.write(bytes(checkpoint.stat().st_size))
    np.testing.assert_array_equal(classifier.predict_scores(images), before)


@pytest.mark.slow
def test_half_precision_checkpoint_weights_load_as_float32(trained_classifier_pair, tmp_path):
    data, (fp32, _) = trained_classifier_pair
    checkpoint = torch.load(fp32.checkpoint_path, weights_only=True)
    checkpoint['state_dict'] = {key: value.half() if value.is_floating_point() else value
                                for key, value in checkpoint['state_dict'].items()}
    torch.save(checkpoint, tmp_path / 'half.pth')
    classifier = BioClassifier(fp32.cfg, str(tmp_path / 'half.pth'), device='cpu',
                               precision='fp32')
    assert all(p.dtype == torch.float32 for p in classifier.model.parameters())
    images = scan_images(data, recursive=True)[:8]
    np.testing.assert_allclose(classifier.predict_scores(images), fp32.predict_scores(images),
                               atol=0.02)


def test_validation_and_test_autocast_in_the_dtype_of_the_run(monkeypatch):
    """MMEngine's val and test loops open autocast without a dtype: on a GPU that is float16,
    also for a bfloat16 run, unless the hook sets the device's default for the loop."""
    from types import SimpleNamespace

    from bioplugin.engine.hooks import eval_autocast_hook
    from bioplugin.engine.hooks.eval_autocast_hook import EvalAutocastHook
    monkeypatch.setattr(eval_autocast_hook, 'model_device_type', lambda model: 'cuda')
    logged = []
    runner = SimpleNamespace(model=torch.nn.Linear(2, 2), logger=SimpleNamespace(
        info=logged.append))
    default = torch.get_autocast_dtype('cuda')
    assert default == torch.float16  # what MMEngine's loops get on a GPU by themselves
    hook = EvalAutocastHook('bf16')
    for enter, leave in ((hook.before_val, hook.after_val), (hook.before_test, hook.after_test)):
        enter(runner)
        assert torch.get_autocast_dtype('cuda') == torch.bfloat16
        leave(runner)
        assert torch.get_autocast_dtype('cuda') == default
    assert logged == ['Validation with bfloat16 autocast on cuda.']  # once per run
    EvalAutocastHook('fp32').before_test(runner)  # no autocast at all: nothing to set
    assert torch.get_autocast_dtype('cuda') == default


def test_the_runner_evaluates_with_its_autocast_dtype(tmp_path):
    from bioplugin.apis import build_runner
    from bioplugin.engine.hooks import EvalAutocastHook
    cfg = build_train_config(TINY_CONFIG, work_dir=str(tmp_path),
                             cfg_options={'precision': 'bf16'})
    runner = build_runner(cfg)
    hooks = [hook for hook in runner.hooks if isinstance(hook, EvalAutocastHook)]
    assert [hook.precision for hook in hooks] == ['bf16']
