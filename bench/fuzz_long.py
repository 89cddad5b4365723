"""The long fuzz run: the generators of test/core/fuzz_cases.py (mutated real ONNX models,
plan files, Darknet cfgs, camera frames) over many seeds, each kind in child-process batches;
counts per outcome class (ok, each project error class, escape, crash, hang) and the first
few failures of each bad class.

    python bench/fuzz_long.py [--cases 2000] [--first-seed 1000000]
        [--out bench/results/fuzz_long_cpu.json]

``--cases`` per kind; the seeds are ``first-seed .. first-seed + cases - 1`` (the test suite
uses seeds from 0, so the two runs do not overlap).
"""
import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'core'))
from benchlib import cpu_name, versions, write_json  # noqa: E402
import fuzz_cases  # noqa: E402

BATCH = 200
BAD = ('escape', 'crash', 'hang')


def run_kind(kind, seeds) -> dict:
    counts, failures, start = collections.Counter(), [], time.monotonic()
    for k in range(0, len(seeds), BATCH):
        for _, seed, outcome in fuzz_cases.run_batch([(kind, s) for s in seeds[k:k + BATCH]],
                                                     timeout=3600):
            cls = outcome.split(':')[0]
            counts[cls] += 1
            if cls in BAD and len(failures) < 10:
                failures.append([seed, outcome])
    return {'cases': len(seeds), 'seconds': round(time.monotonic() - start, 1),
            'outcomes': dict(counts.most_common()), 'failures': failures}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cases', type=int, default=2000, help='cases per kind')
    parser.add_argument('--first-seed', type=int, default=1_000_000)
    parser.add_argument('--kinds', nargs='+', default=list(fuzz_cases.KINDS))
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'fuzz_long_cpu.json'))
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.cases))
    doc = {'cpu': cpu_name(), 'versions': versions('numpy', 'onnx', 'opencv-python-headless'),
           'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'seeds': [seeds[0], seeds[-1]],
           'kinds': {}}
    for kind in args.kinds:
        doc['kinds'][kind] = run_kind(kind, seeds)
        doc['load_average'] = os.getloadavg()
        write_json(args.out, doc)
        print(kind, doc['kinds'][kind], flush=True)
    bad = sum(n for k in doc['kinds'].values() for c, n in k['outcomes'].items() if c in BAD)
    doc['total_bad'] = bad
    write_json(args.out, doc)
    print('escapes + crashes + hangs:', bad)


if __name__ == '__main__':
    main()
