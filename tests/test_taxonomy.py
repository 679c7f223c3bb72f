"""Taxonomic roll-up: per-rank probabilities and accuracy, confident_rank, bad taxonomy files,
and the columns tools/test.py and BioClassifier add."""
import json
import os.path as osp

import numpy as np
import pandas as pd
import pytest

from bioplugin.apis import BioClassifier, load_config
from bioplugin.errors import DatasetError
from bioplugin.evaluation.taxonomy import add_rank_columns, rank_accuracy, read_taxonomy
from helpers import GOLDEN, TINY_CONFIG, tool_main

CLASSES = ['a1', 'a2', 'b1', 'c1']
TAXONOMY = 'species,genus,family\na1,A,F\na2,A,F\nb1,B,F\nc1,C,G\n'


def write(tmp_path, text, name='taxonomy.csv'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_rollup_accuracy_by_hand_and_confident_rank(tmp_path):
    taxonomy = read_taxonomy(write(tmp_path, TAXONOMY), CLASSES)
    assert (taxonomy.class_rank, taxonomy.ranks) == ('species', ['genus', 'family'])
    scores = np.array([[0.50, 0.45, 0.03, 0.02],   # truth a2: species wrong, genus A right
                       [0.10, 0.10, 0.15, 0.65],   # truth b1: wrong at every rank... family G
                       [0.05, 0.05, 0.85, 0.05],   # truth b1: right everywhere
                       [0.30, 0.00, 0.30, 0.40]])  # truth a1: species c1, genus C, family F
    labels = [1, 2, 2, 0]
    # by hand: species 1/4; genus A,C,B,C vs A,B,B,A -> 2/4; family F,G,F,F vs F,F,F,F -> 3/4
    assert rank_accuracy(scores, labels, taxonomy) == {'genus_top1': 50.0, 'family_top1': 75.0}
    for rank in taxonomy.ranks:
        names, rolled = taxonomy.rollup(scores, rank)
        np.testing.assert_allclose(rolled.sum(1), 1)
    names, genus = taxonomy.rollup(scores, 'genus')
    assert names == ['A', 'B', 'C'] and genus[0].tolist() == pytest.approx([0.95, 0.03, 0.02])
    frame = pd.DataFrame(dict(image_name=list('wxyz'),
                              pred_label=[CLASSES[i] for i in scores.argmax(1)],
                              score=scores.max(1)))
    add_rank_columns(frame, scores, taxonomy, threshold=0.9)
    assert list(frame.genus_label) == ['A', 'C', 'B', 'C']
    assert list(frame.family_label) == ['F', 'G', 'F', 'F']
    assert frame.family_score.tolist() == pytest.approx([0.98, 0.65, 0.95, 0.6])
    # a1/a2 hesitation -> genus confident; 0.85 b1 -> family (0.95); nothing reaches 0.9 in 2, 4
    assert list(frame.confident_rank) == ['genus', '', 'family', '']
    assert list(frame.columns[:2]) == ['image_name', 'pred_label']


@pytest.mark.parametrize('text, sentence', [
    ('species,genus\na1,A\na2,A\nb1,B\n', "has no row for class(es) 'c1'"),
    ('species,genus\na1,A\na2,A\nb1,B\nc1,C\na1,A\n', "lists class 'a1' twice (rows 2, 6)"),
    ('species,genus\na1,A\na2,A\nb1,B\nc1,C\nzz,Z\n', "row(s) 6 name 'zz', which is not a "
                                                       'class folder'),
    ('species,genus,family\na1,A,F\na2,A,G\nb1,B,F\nc1,C,G\n',
     "puts genus 'A' under two family values: 'F' (row 2) and 'G' (row 3)"),
    ('species,genus\na1,A\na2,\nb1,B\nc1,C\n', "row 3 has an empty 'genus'"),
    ('species\na1\n', 'at least one higher rank'),
])
def test_bad_taxonomy_files_are_one_sentence_naming_the_rows(tmp_path, text, sentence):
    path = write(tmp_path, text)
    with pytest.raises(DatasetError) as error:
        read_taxonomy(path, CLASSES)
    assert sentence in str(error.value) and path in str(error.value)
    assert '\n' not in str(error.value)


DATA = osp.join(GOLDEN, 'data')
CHECKPOINT = osp.join(GOLDEN, 'tiny_epoch_2.pth')
GOLDEN_TAXONOMY = 'class,genus,family\n0,G0,F0\n1,G1,F0\n2,G1,F0\n'


@pytest.mark.slow
def test_tools_and_api_add_the_ranks(tmp_path):
    taxonomy = write(tmp_path, GOLDEN_TAXONOMY)
    status, stdout, stderr = tool_main('test.py', TINY_CONFIG, CHECKPOINT, '--taxonomy',
                                       taxonomy, '--data-root', DATA, '--work-dir', tmp_path,
                                       '--fp32')
    assert status == 0, stderr
    assert 'genus top-1 (%)' in stdout and 'family top-1 (%)' in stdout
    metrics = json.loads((tmp_path / 'metrics_val.json').read_text())['metrics']
    assert metrics['taxonomy/family_top1'] == 100.0  # one family
    frame = pd.read_csv(tmp_path / 'predictions_val.csv', dtype=str)
    truth = frame.gt_label.map({'0': 'G0', '1': 'G1', '2': 'G1'})
    assert metrics['taxonomy/genus_top1'] == pytest.approx(
        100 * (frame.genus_label == truth).mean())
    status, _, stderr = tool_main('test.py', TINY_CONFIG, CHECKPOINT, '--csv',
                                  tmp_path / 'p.csv', '--taxonomy', taxonomy, '--data-root',
                                  DATA, '--fp32')
    assert status == 0, stderr
    frame = pd.read_csv(tmp_path / 'p.csv', dtype=str)
    assert list(frame.columns[:2]) == ['image_name', 'pred_label'] and len(frame) == len(
        pd.read_csv(osp.join(GOLDEN, 'test.csv')))
    assert {'genus_label', 'genus_score', 'family_label', 'family_score',
            'confident_rank'} <= set(frame.columns)
    table = BioClassifier(load_config(TINY_CONFIG, data_root=DATA), CHECKPOINT,
                          precision='fp32').predict(osp.join(DATA, 'test'), taxonomy=taxonomy)
    assert list(table.genus_label) == list(frame.genus_label)
    bad = write(tmp_path, 'class,genus\n0,G0\n1,G1\n', 'bad.csv')
    status, _, stderr = tool_main('test.py', TINY_CONFIG, CHECKPOINT, '--taxonomy', bad,
                                  '--data-root', DATA)
    assert status == 2 and "has no row for class(es) '2'" in stderr
