"""Checking and splitting a dataset before training: the doctor (``tools/data/check_dataset.py``),
its near-duplicate search, and the stratified / grouped folds of ``tools/kfold.py`` and
``tools/data/split.py``."""
