"""The numbers of a config that must make sense before a Runner builds anything: each bad
value is one sentence naming the key and what it should be (MMEngine and PyTorch would stop
later, with a traceback or a silent surprise)."""
import math
import numbers

from ..datasets.loader_options import DATALOADERS
from ..errors import ConfigError


def _whole(value, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and value >= least


def check_config_numbers(cfg) -> None:
    """``model.head.num_classes`` and every loader's ``batch_size`` / ``num_workers``."""
    head = (cfg.get('model') or {}).get('head') or {}
    classes = head.get('num_classes')
    if classes is not None and not _whole(classes, 1):
        raise ConfigError(f'model.head.num_classes={classes!r}: the number of class folders '
                          'in train/, a whole number of at least 1.')
    for name in DATALOADERS:
        loader = cfg.get(name) or {}
        size, workers = loader.get('batch_size'), loader.get('num_workers')
        if size is not None and not _whole(size, 1):
            raise ConfigError(f'{name}.batch_size={size!r}: images per batch, a whole number '
                              'of at least 1.')
        if workers is not None and workers != 'auto' and not _whole(workers, 0):
            raise ConfigError(f"{name}.num_workers={workers!r}: 'auto' or a whole number of "
                              'loader processes (0: load in the main process).')


def check_training_numbers(cfg) -> None:
    """The learning rate and the epoch count of a training run."""
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    lr = optimizer.get('lr')
    if lr is not None and not (isinstance(lr, numbers.Real) and not isinstance(lr, bool)
                               and math.isfinite(lr) and lr > 0):
        raise ConfigError(f'optim_wrapper.optimizer.lr={lr!r}: a learning rate is a positive '
                          'number (the recipe uses 1e-3).')
    epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
    if epochs is not None and not _whole(epochs, 1):
        raise ConfigError(f'train_cfg.max_epochs={epochs!r}: a run trains at least one epoch; '
                          'nothing would be trained.')
