"""Per-launch rows of Nsight Compute "details" CSV files (bench/device_ncu.sh): kernel, grid,
duration, SM active cycles, registers, warp cycles per issued instruction; one JSON.

    python bench/ncu_summary.py OUT.json LABEL=FILE.csv [LABEL=FILE.csv ...]
"""
import csv
import io
import json
import sys

FIELDS = {'Duration': 'duration_ns', 'SM Active Cycles': 'sm_active_cycles',
          'Elapsed Cycles': 'elapsed_cycles', 'Registers Per Thread': 'registers',
          'Warp Cycles Per Issued Instruction': 'cycles_per_issue'}


def number(text: str) -> float:
    return float(text.replace(',', ''))


def launches(path) -> list:
    """One dict per profiled launch of an ncu ``--csv --page details`` file, in order."""
    lines = open(path).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    rows = {}
    for r in csv.DictReader(io.StringIO('\n'.join(lines[start:]))):
        row = rows.setdefault(r['ID'], dict(kernel=r['Kernel Name'].split('(')[0][:60],
                                            grid=r['Grid Size'], block=r['Block Size']))
        if r['Metric Name'] in FIELDS:
            row[FIELDS[r['Metric Name']]] = number(r['Metric Value'])
    return list(rows.values())


def main(out, *pairs):
    doc = dict(what='Nsight Compute per-launch durations (--clock-control none, caches '
                    'flushed between kernels: one profiled pass, not a benchmark)', runs={})
    for pair in pairs:
        label, path = pair.split('=', 1)
        rows = launches(path)
        doc['runs'][label] = dict(launches=rows,
                                  duration_sum_us=sum(r.get('duration_ns', 0) for r in rows)
                                  / 1e3)
    with open(out, 'w') as f:
        json.dump(doc, f, indent=1)
    for label, run in doc['runs'].items():
        print(label, len(run['launches']), 'launches', round(run['duration_sum_us'], 1), 'us')


if __name__ == '__main__':
    main(*sys.argv[1:])
