"""Side-by-side speed and memory benchmark of the recipe against the seed's plain PyTorch code.

Every measurement runs in its own spawned process, so each reports its own peak memory and no
case warms caches for another. ``tools/benchmark.py`` is the command line; with ``tools/`` on
``sys.path``::

    from benchmarking import BenchmarkSettings, format_text, run_benchmark
    report = run_benchmark(BenchmarkSettings(config='configs/bio_resnext.py'), 'tmp/bench')
    print(format_text(report['rows']))
"""
from .common import CASES, DEFAULT_CASES, BenchmarkSettings
from .report import build_rows, failures, format_markdown, format_text, write_json
from .suite import run_benchmark

__all__ = ['BenchmarkSettings', 'CASES', 'DEFAULT_CASES', 'build_rows', 'failures',
           'format_markdown', 'format_text', 'run_benchmark', 'write_json']
