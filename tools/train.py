"""Train a classifier from a config.

    python tools/train.py configs/bio_resnext.py
    python tools/train.py configs/bio_resnext.py --work-dir work_dirs/run1 --resume
    python tools/train.py configs/bio_resnext.py --cfg-options train_cfg.max_epochs=30

A run stopped by SIGTERM or SIGUSR1 saves a recovery checkpoint and exits with status 75;
--resume continues at that batch.
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis import calibrate_checkpoint
from bioplugin.apis import build_train_config, train
from bioplugin.apis.train import restart
from bioplugin.apis.cli import (add_config_options, add_precision_options, add_trust_checkpoint,
                                precision_choice, run_tool, tool_parser)
from bioplugin.engine.distributed import LAUNCHERS
from mmengine.dist import is_main_process


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='config file, e.g. configs/bio_resnext.py')
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='continue training; without a value, from the latest '
                        'checkpoint in the work dir (epoch or recovery)')
    resume.add_argument('--auto-resume', dest='resume', action='store_const', const='if_any',
                        help='continue from the latest checkpoint in the work dir when there '
                        'is one, else start (for jobs that are requeued)')
    resume.add_argument('--restart', action='store_true',
                        help="start over in a work dir that holds an earlier run: its files are "
                        'moved into a previous_<time> folder inside it, not deleted')
    add_precision_options(parser)
    parser.add_argument('--seed', type=int, help='random seed (config default: 42)')
    parser.add_argument('--freeze-stages', type=int, metavar='N',
                        help='freeze the stem and the first N backbone stages (0: stem only)')
    parser.add_argument('--head-lr-mult', type=float, metavar='M',
                        help='train the head with M times the base learning rate')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log for TensorBoard (needs `pip install tensorboard`)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='multi-process launcher (tools/dist_train.sh, tools/slurm_train.sh '
                        'set it)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the global batch size')
    parser.add_argument('--no-calibrate', action='store_true',
                        help='skip fitting the score temperature of the best checkpoint on val '
                        'after training')
    add_trust_checkpoint(parser)
    add_config_options(parser)
    return parser.parse_args(argv)


def report_calibration(cfg, best: str, args) -> None:
    """Fit the best checkpoint's score temperature, review thresholds and unknown threshold
    on val (tools/analysis/calibrate.py)."""
    if args.no_calibrate:
        return
    if args.launcher != 'none':
        print(f'Calibrate the scores with: python tools/analysis/calibrate.py {cfg.work_dir}')
        return
    record = calibrate_checkpoint(cfg, best, trust_checkpoint=args.trust_checkpoint)
    review = record['review']
    print(f"Score calibration: temperature {record['temperature']:.3f}, "
          f"{review['coverage']:.0%} of val auto-accepted at {review['target_precision']:.0%} "
          f"precision -> {record['file']}")
    open_set = record.get('open_set') or {}
    if open_set.get('threshold') is not None:
        print(f"Unknown threshold {open_set['threshold']:.3f}: {open_set['val_known_rate']:.0%} "
              'of val pass as known')
    for warning in record['warnings']:
        print(f'warning: {warning}')


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        cfg = build_train_config(args.config, work_dir=args.work_dir, resume=args.resume,
                                 cfg_options=args.cfg_options, data_root=args.data_root,
                                 precision=precision_choice(args), seed=args.seed,
                                 freeze_stages=args.freeze_stages,
                                 head_lr_mult=args.head_lr_mult,
                                 tensorboard=args.tensorboard, launcher=args.launcher,
                                 auto_scale_lr=args.auto_scale_lr, restart=args.restart)
        if args.restart:
            archive = restart(cfg.work_dir, args.launcher, args.config)
            if archive:
                print(f'The earlier run of {cfg.work_dir} was moved to {archive}')
        runner = train(cfg, trust_checkpoint=args.trust_checkpoint)
        if not is_main_process():
            return 0
        best = runner.message_hub.get_info('best_ckpt')
        if best:
            score = runner.message_hub.get_info('best_score')
            print(f'Best checkpoint: {best} (val top-1 {score:.2f}%)')
            report_calibration(cfg, best, args)
        print(f'Checkpoints and logs are in {cfg.work_dir}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
