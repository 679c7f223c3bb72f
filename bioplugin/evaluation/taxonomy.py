"""Taxonomic roll-up: class probabilities summed up the tree (species → genus → family …).

A taxonomy file is a CSV whose first column is the class folder name and whose next columns
are higher ranks, most specific first; the header names the ranks::

    species,genus,family
    Chaetoceros_debilis,Chaetoceros,Chaetocerotaceae
    Chaetoceros_socialis,Chaetoceros,Chaetocerotaceae
    Ditylum_brightwellii,Ditylum,Lithodesmiaceae

When the model hesitates between two species of one genus, the genus can still be certain:
``confident_rank`` names the most specific rank whose top probability reaches a threshold.
"""
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from ..errors import DatasetError

CONFIDENT = 0.9  # default probability a rank's top group needs to count as confident


class Taxonomy:
    """The ranks above the classes: ``ranks`` (most specific first), ``class_rank`` (the name
    of the first column), and per rank the group of every class (``groups[rank][i]``)."""

    def __init__(self, class_rank: str, ranks: Sequence[str], groups: Dict[str, List[str]]):
        self.class_rank = class_rank
        self.ranks = list(ranks)
        self.groups = groups

    def rollup(self, scores: np.ndarray, rank: str) -> tuple:
        """``(group names, (N, groups) probabilities)``: each group's classes summed."""
        names = sorted(set(self.groups[rank]))
        member = np.zeros((len(self.groups[rank]), len(names)))
        index = {name: i for i, name in enumerate(names)}
        for class_index, group in enumerate(self.groups[rank]):
            member[class_index, index[group]] = 1
        return names, np.asarray(scores, np.float64) @ member

    def labels(self, class_indices: Sequence[int], rank: str) -> List[str]:
        return [self.groups[rank][i] for i in class_indices]


def read_taxonomy(path: str, classes: Sequence[str]) -> Taxonomy:
    """Read ``path`` for the model's ``classes``; one sentence naming the rows when a class is
    missing, listed twice or unknown, a cell is empty, or a group sits under two parents."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f'Cannot read the taxonomy file {path!r}: {error}') from None
    if table.shape[1] < 2 or table.empty:
        raise DatasetError(f'Taxonomy file {path!r} needs a header and rows of a class folder '
                           'name followed by at least one higher rank (e.g. species,genus).')
    table = table.apply(lambda column: column.str.strip())
    class_rank, ranks = table.columns[0], list(table.columns[1:])
    row_of = lambda i: i + 2  # noqa: E731  (file line of a data row: header is line 1)
    duplicated = table[table.duplicated(class_rank, keep=False)]
    if len(duplicated):
        name = duplicated[class_rank].iloc[0]
        rows = [row_of(i) for i in duplicated.index[duplicated[class_rank] == name]]
        raise DatasetError(f'Taxonomy file {path!r} lists class {name!r} twice (rows '
                           f'{", ".join(map(str, rows))}); keep one row per class.')
    unknown = table[~table[class_rank].isin(list(classes))]
    if len(unknown):
        raise DatasetError(
            f'Taxonomy file {path!r} row(s) {", ".join(str(row_of(i)) for i in unknown.index)}'
            f' name {", ".join(repr(n) for n in unknown[class_rank])}, which is not a class '
            f'folder of this model.')
    missing = [name for name in classes if name not in set(table[class_rank])]
    if missing:
        raise DatasetError(f'Taxonomy file {path!r} has no row for class(es) '
                           f'{", ".join(map(repr, missing[:10]))}; add one per class folder.')
    empty = [(row_of(i), rank) for rank in ranks for i in table.index[table[rank] == '']]
    if empty:
        raise DatasetError(f'Taxonomy file {path!r} row {empty[0][0]} has an empty '
                           f'{empty[0][1]!r}; every class needs every rank.')
    for lower, upper in zip(ranks, ranks[1:]):
        parents = table.groupby(lower)[upper].unique()
        for group, above in parents.items():
            if len(above) > 1:
                rows = [row_of(table.index[(table[lower] == group) & (table[upper] == a)][0])
                        for a in above[:2]]
                raise DatasetError(
                    f'Taxonomy file {path!r} puts {lower} {group!r} under two {upper} values: '
                    f'{above[0]!r} (row {rows[0]}) and {above[1]!r} (row {rows[1]}).')
    by_class = table.set_index(class_rank)
    groups = {rank: [by_class.at[name, rank] for name in classes] for rank in ranks}
    return Taxonomy(class_rank, ranks, groups)


def rank_accuracy(scores: np.ndarray, gt_labels: Sequence[int],
                  taxonomy: Taxonomy) -> Dict[str, float]:
    """Top-1 accuracy at every rank: the right group among the rolled-up probabilities."""
    result = {}
    for rank in taxonomy.ranks:
        names, rolled = taxonomy.rollup(scores, rank)
        predicted = np.asarray(names, dtype=object)[rolled.argmax(1)]
        truth = np.asarray(taxonomy.labels(gt_labels, rank), dtype=object)
        result[f'{rank}_top1'] = float((predicted == truth).mean() * 100) if len(truth) else 0.0
    return result


def add_rank_columns(frame: pd.DataFrame, scores: np.ndarray, taxonomy: Taxonomy,
                     threshold: float = CONFIDENT) -> pd.DataFrame:
    """``<rank>_label`` and ``<rank>_score`` for every rank, and ``confident_rank``: the most
    specific rank (the class rank first) whose top probability reaches ``threshold`` (empty
    when none does, or the image could not be read)."""
    readable = ~np.isnan(scores).any(1) if len(scores) else np.zeros(0, bool)
    confident = np.where(readable & (frame['score'].to_numpy(float) >= threshold),
                         taxonomy.class_rank, '').astype(object)
    for rank in taxonomy.ranks:
        names, rolled = taxonomy.rollup(np.nan_to_num(scores), rank)
        best = rolled.argmax(1) if len(rolled) else np.zeros(0, int)
        top = rolled.max(1) if len(rolled) else np.zeros(0)
        frame[f'{rank}_label'] = np.where(readable, np.asarray(names, dtype=object)[best], '')
        frame[f'{rank}_score'] = np.where(readable, top, np.nan)
        confident = np.where((confident == '') & readable & (top >= threshold), rank, confident)
    frame['confident_rank'] = confident
    return frame

