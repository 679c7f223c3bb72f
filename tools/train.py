"""Train a classifier from a config.

    python tools/train.py configs/bio_resnext.py
    python tools/train.py configs/bio_resnext.py --work-dir work_dirs/run1 --resume
    python tools/train.py configs/bio_resnext.py --cfg-options train_cfg.max_epochs=30
"""
import argparse
import sys

import bioplugin  # first: registers components and quiets known import warnings
from bioplugin.apis import build_train_config, train
from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/bio_resnext.py')
    parser.add_argument('--work-dir', help='where checkpoints and logs go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='continue training; without a value, from the latest '
                        'checkpoint in the work dir')
    parser.add_argument('--data-root', help='dataset folder with train/, val/ and test/ '
                        '(overrides the config\'s data_root)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 on CUDA, bfloat16 on CPU')
    parser.add_argument('--seed', type=int, help='random seed (config default: 42)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. optim_wrapper.optimizer.lr=5e-4')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_train_config(args.config, work_dir=args.work_dir, resume=args.resume,
                                 cfg_options=args.cfg_options, data_root=args.data_root,
                                 amp=args.amp, seed=args.seed)
        runner = train(cfg)
    except bioplugin.BioPluginError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    best = runner.message_hub.get_info('best_ckpt')
    if best:
        score = runner.message_hub.get_info('best_score')
        print(f'Best checkpoint: {best} (val top-1 {score:.2f}%)')
    print(f'Checkpoints and logs are in {cfg.work_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
