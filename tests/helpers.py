"""Shared test helpers: paths, generated image folders, running the tools."""
import contextlib
import importlib.util
import io
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(REPO, 'tests', 'configs', 'bio_tiny.py')
RECIPE_CONFIG = osp.join(REPO, 'configs', 'bio_resnext.py')
GOLDEN = osp.join(REPO, 'tests', 'fixtures', 'golden')


def class_colour(label: int) -> tuple:
    """A distinct BGR colour per class, so a tiny model can learn the classes."""
    return ((label * 83) % 256, (label * 151 + 60) % 256, (label * 47 + 120) % 256)


def write_image(path: str, label: int, size=(40, 48), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    img = np.empty((*size, 3), np.uint8)
    img[:] = class_colour(label)
    img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img), path
    return path


def make_image_folder(root: str, class_names, per_class: int = 4, val_per_class: int = 2,
                      test_images: int = 3, ext: str = '.jpg') -> str:
    """``root/{train,val}/<class>/*`` with class-coloured images and a flat ``root/test``."""
    for split_index, (split, count) in enumerate((('train', per_class), ('val', val_per_class))):
        for label, name in enumerate(class_names):
            for i in range(count):
                write_image(osp.join(root, split, name, f'img_{i}{ext}'), label,
                            size=(36 + 4 * (i % 3), 44), seed=(split_index, label, i))
    os.makedirs(osp.join(root, 'test'), exist_ok=True)
    for i in range(test_images):
        write_image(osp.join(root, 'test', f'test_{i}{ext}'), i % len(class_names), seed=i)
    return root


def run_tool(*args, cwd=REPO, env=None):
    """Run a script of ``tools/`` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)


def run_logs(work_dir) -> list:
    """The text of every run's log file in ``work_dir`` (one timestamped folder per run),
    oldest first: MMEngine's whole log, whatever reached the console."""
    import glob
    paths = sorted(glob.glob(osp.join(str(work_dir), '2*', '2*.log')))
    texts = []
    for path in paths:
        with open(path, encoding='utf-8') as file:
            texts.append(file.read())
    return texts


def tool_main(script: str, *argv):
    """Call ``main(argv)`` of a script of ``tools/`` in this process; returns
    ``(exit status, stdout, stderr)``. For argument and error-message checks."""
    path = osp.join(REPO, 'tools', script)
    spec = importlib.util.spec_from_file_location(
        f'tool_{osp.splitext(osp.basename(script))[0]}', path)
    module = importlib.util.module_from_spec(spec)
    folder = osp.dirname(path)  # a script imports the modules beside it, as `python` lets it
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = module.main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse errors
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def mmpretrain_tool(name: str) -> str:
    """A script of MMPretrain's own tools (``train.py``, ``test.py``), as ``mim`` runs it."""
    import mmpretrain
    return osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', name)


def pretrained_model(cfg):
    """The config's model with its ImageNet weights resolved and loaded, as BioRunner does
    when training starts."""
    from bioplugin.engine.pretrained import resolve_pretrained
    from bioplugin.models import build_model
    model = build_model(cfg)
    resolve_pretrained(model)
    model.init_weights()
    return model.eval()


# ---------------------------------------------------------------- interrupted training runs

def train_tiny(data, work_dir, *extra, config=TINY_CONFIG, epochs=3, env=None):
    """``tools/train.py`` on the tiny config for ``epochs`` epochs (a CompletedProcess)."""
    return run_tool('tools/train.py', config, '--data-root', data, '--work-dir', str(work_dir),
                    '--cfg-options', f'train_cfg.max_epochs={epochs}', *extra, env=env)


def killing_config(tmp_path, hook: dict = None, checkpoint_backend: dict = None,
                   recovery: dict = None) -> str:
    """The tiny config plus a kill switch (tests/kill_switch.py): an extra hook, a file
    backend for the epoch checkpoints, settings of the recovery checkpoints."""
    from mmengine.config import Config
    base = Config.fromfile(TINY_CONFIG)
    lines = [f'_base_ = [{TINY_CONFIG!r}]',
             "custom_imports = dict(imports=['bioplugin', 'kill_switch'], "
             'allow_failed_imports=False)']
    if hook:
        lines.append(f'custom_hooks = {base.custom_hooks + [hook]!r}')
    default_hooks = {}
    if checkpoint_backend:
        default_hooks['checkpoint'] = dict(backend_args=checkpoint_backend)
    if recovery:
        default_hooks['recovery'] = recovery
    if default_hooks:
        lines.append(f'default_hooks = {default_hooks!r}')
    path = tmp_path / 'killing_config.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def env_with_tests_on_path() -> dict:
    """The environment, with tests/ importable (for ``kill_switch``)."""
    tests = osp.join(REPO, 'tests')
    return dict(os.environ, PYTHONPATH=tests + os.pathsep + os.environ.get('PYTHONPATH', ''))


def final_weights(work_dir, epoch: int = 3) -> dict:
    from bioplugin.engine.checkpoint_io import read_checkpoint
    return read_checkpoint(osp.join(work_dir, f'epoch_{epoch}.pth'))['state_dict']


def assert_same_weights(expected: dict, actual: dict) -> None:
    """Tensor for tensor, bit for bit."""
    import torch
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'
