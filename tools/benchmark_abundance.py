"""How long an abundance estimate with its bootstrap intervals takes, method by method, on
synthetic calibrated posteriors (no model: the images' scores are given).

    python tools/benchmark_abundance.py                       # 10,000 images, 1,000 rounds
    python tools/benchmark_abundance.py --images 50000 --classes 100 --bootstrap 200

Each round resamples the sample's images and the val images (within each class) and
re-estimates; the table gives the seconds of each method (median of --repeats) and the CPU.
"""
import os.path as osp
import sys
import time

import numpy as np

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.evaluation.quantification import METHODS, quantify

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/benchmarking/
from benchmarking.common import cpu_features, describe_cpu  # noqa: E402
from benchmarking.suite import cpu_model  # noqa: E402


def posteriors(rng, counts, classes: int):
    """Calibrated posteriors of Gaussian classes (means 1.6 apart on each axis), labels."""
    means = np.eye(classes) * 1.6
    labels = np.repeat(np.arange(classes), counts)
    points = means[labels] + rng.normal(size=(len(labels), classes))
    log_likelihood = -((points[:, None, :] - means[None]) ** 2).sum(2) / 2
    scores = np.exp(log_likelihood - log_likelihood.max(1, keepdims=True))
    return scores / scores.sum(1, keepdims=True), labels


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('--images', type=int, default=10_000)
    parser.add_argument('--classes', type=int, default=10)
    parser.add_argument('--val-per-class', type=int, default=50)
    parser.add_argument('--bootstrap', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    args = parser.parse_args(argv)

    def body() -> int:
        rng = np.random.default_rng(0)
        mix = rng.dirichlet(np.ones(args.classes))
        sample, _ = posteriors(rng, rng.multinomial(args.images, mix), args.classes)
        val, labels = posteriors(rng, [args.val_per_class] * args.classes, args.classes)
        print(f'CPU: {cpu_model()}; {describe_cpu(cpu_features())}\n'
              f'{len(sample):,} images, {args.classes} classes, {len(val):,} val images, '
              f'{args.bootstrap:,} bootstrap rounds, median of {args.repeats}')
        for method in args.methods:
            seconds = []
            for repeat in range(args.repeats):
                start = time.perf_counter()
                result = quantify(sample, val, labels, method, bootstrap=args.bootstrap,
                                  seed=repeat)
                seconds.append(time.perf_counter() - start)
            error = np.abs(result['proportions'] - mix).mean()
            print(f'{method:5} {np.median(seconds):7.2f} s   mean absolute error '
                  f'{error:.4f}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
