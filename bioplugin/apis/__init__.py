from .calibrate import calibrate_checkpoint, calibrate_work_dir, format_calibration
from .config import build_split_dataset, load_config, work_dir_config
from .evaluate import (CheckpointEvaluator, build_test_config, evaluate, prediction_writer,
                       run_test)
from .inference import BioClassifier
from .train import build_runner, build_train_config, train

__all__ = ['BioClassifier', 'CheckpointEvaluator', 'build_runner', 'build_split_dataset',
           'build_test_config', 'build_train_config', 'calibrate_checkpoint',
           'calibrate_work_dir', 'evaluate', 'format_calibration', 'load_config',
           'prediction_writer', 'run_test', 'train', 'work_dir_config']
