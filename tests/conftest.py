import pytest

import bioplugin  # noqa: F401  (registers the components)

from helpers import make_image_folder


@pytest.fixture
def tiny_data(tmp_path):
    """Three classes, 8 training and 3 validation images each, 3 test images."""
    return make_image_folder(str(tmp_path / 'data'), ['0', '1', '2'], per_class=8,
                             val_per_class=3)
