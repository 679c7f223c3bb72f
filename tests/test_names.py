"""Class and file names are data: names that read as math (``$\\bad$``), as missing values
(``NA``, ``None``) or as spreadsheet formulas (``=1+1``) are drawn as they are."""
import io

import numpy as np
from matplotlib.text import Text

from bioplugin.analysis.confusion import confused_pairs, per_class_table
from bioplugin.analysis.plots import (plot_confused_pairs, plot_confusion_matrix,
                                      plot_image_grid, plot_per_class)

NAMES = ['$\\bad$', 'NA', 'None', '=1+1']


# ---------------------------------------------------------------- figures, without a model

def texts_with_names(figure) -> list:
    """Every text of a drawn figure that shows one of the names."""
    figure.savefig(io.BytesIO(), format='png')  # draws every text: math would raise here
    return [text for text in figure.findobj(Text)
            if any(name in text.get_text() for name in NAMES)]


def assert_verbatim(figure) -> None:
    texts = texts_with_names(figure)
    assert texts
    for text in texts:
        assert not text.get_parse_math() and not text.get_usetex(), text.get_text()


def test_figures_draw_names_verbatim():
    matrix = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]])
    confusion = plot_confusion_matrix(matrix, NAMES)
    assert_verbatim(confusion)
    axis = confusion.axes[0]
    assert [label.get_text() for label in axis.get_xticklabels()] == NAMES
    assert [label.get_text() for label in axis.get_yticklabels()] == NAMES

    per_class = plot_per_class(per_class_table(matrix, NAMES))
    assert_verbatim(per_class)
    assert {label.get_text() for label in per_class.axes[0].get_yticklabels()} == {
        f'{name} (n={n})' for name, n in zip(NAMES, matrix.sum(1))}

    pairs = plot_confused_pairs(confused_pairs(matrix, NAMES))
    assert_verbatim(pairs)
    assert {label.get_text() for label in pairs.axes[0].get_yticklabels()} == {
        '$\\bad$ → NA', 'None → $\\bad$', '=1+1 → None'}

    grid = plot_image_grid([np.zeros((4, 4, 3), np.uint8)] * 2,
                           ['$\\bad$ → NA', '=1+1 → None'], 'None of $\\bad$')
    assert_verbatim(grid)
    assert [axis.get_title() for axis in grid.axes[:2]] == ['$\\bad$ → NA', '=1+1 → None']
    assert grid.get_suptitle() == 'None of $\\bad$'
