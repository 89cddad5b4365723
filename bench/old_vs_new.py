"""Side-by-side summary of one ``bench/device_run.sh bench`` call (old tree and new tree
measured alternately on the same GPU): median and p99 per model, old vs new, and the ratio.

    python bench/old_vs_new.py RESULTS_DIR OLD_COMMIT NEW_COMMIT OUT.json
"""
import json
import sys
from pathlib import Path


def pipeline_rows(folder: Path, tree: str) -> dict:
    """{'pipeline/<model>/<path>/<round>': {median_ms, p99_ms}} of bench_pipeline.py files."""
    rows = {}
    for path in sorted(folder.glob(f'pipeline_{tree}_*.json')):
        run = path.stem.rsplit('_', 1)[1]
        for row in json.loads(path.read_text())['rows']:
            key = f"pipeline/{row['model']}/{row['conv_path']}/round{run}"
            rows[key] = {k: row['pipeline_end_to_end'][k] for k in ('median_ms', 'p99_ms')}
    return rows


def engine_rows(folder: Path, tree: str) -> dict:
    """{'engine/<model>': {median_ms, p99_ms}} of bench_cuda.py's 'ours' (kernels only)."""
    data = json.loads((folder / f'cuda_{tree}' / 'cuda_vs_torch_h200.json').read_text())
    return {f'engine/{name}': {k: model['contenders']['ours'][k] for k in ('median_ms', 'p99_ms')}
            for name, model in data['models'].items() if 'ours' in model.get('contenders', {})}


def main(folder, old_commit, new_commit, out):
    folder = Path(folder)
    old = {**pipeline_rows(folder, 'old'), **engine_rows(folder, 'old')}
    new = {**pipeline_rows(folder, 'new'), **engine_rows(folder, 'new')}
    rows = {key: {'old': old[key], 'new': new[key],
                  'new_over_old_median': round(new[key]['median_ms'] / old[key]['median_ms'], 3)}
            for key in sorted(old) if key in new}
    result = {'device': (folder / 'device.txt').read_text().strip(),
              'old_commit': old_commit, 'new_commit': new_commit,
              'method': 'old and new trees alternately in one call on one GPU; pipeline: '
                        '640x480 uint8 frame in, detections out, 500 frames after 50 warm-up, '
                        'two rounds; engine: bench_cuda.py ours phase, 200 CUDA-event timed '
                        'graph replays (kernels only)',
              'rows': rows}
    Path(out).write_text(json.dumps(result, indent=1) + '\n')
    for key, row in rows.items():
        print(f"{key:36s} old {row['old']['median_ms']:7.3f} new {row['new']['median_ms']:7.3f}"
              f"  x{row['new_over_old_median']:.3f}")


if __name__ == '__main__':
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
