import os

import pytest

import bioplugin  # noqa: F401  (registers the components)

from helpers import final_weights, make_image_folder, train_tiny


@pytest.fixture(scope='session', autouse=True)
def user_cache(tmp_path_factory):
    """A cache directory of the tests' own (the inference-layout probe writes there, and
    the tools the tests run inherit it), not the user's ``~/.cache``."""
    os.environ['XDG_CACHE_HOME'] = str(tmp_path_factory.mktemp('user_cache'))


@pytest.fixture
def tiny_data(tmp_path):
    """Three classes, 8 training and 3 validation images each, 3 test images."""
    return make_image_folder(str(tmp_path / 'data'), ['0', '1', '2'], per_class=8,
                             val_per_class=3)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Three classes, 8 training images each (6 iterations of 4 per epoch), 3 val images each."""
    return make_image_folder(str(tmp_path_factory.mktemp('run') / 'data'), ['0', '1', '2'],
                             per_class=8, val_per_class=3)


@pytest.fixture(scope='module')
def uninterrupted(data, tmp_path_factory):
    """The final weights of 3 uninterrupted epochs on ``data``: what resumed runs must equal."""
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    result = train_tiny(data, work_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return final_weights(work_dir)
