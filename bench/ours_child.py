"""One round of our engine in a fresh process, like each PyTorch child of ``bench_cuda.py``:
load the saved plan, time the kernels-only graph and the per-frame graph, write the JSON.

    python bench/ours_child.py PLAN OUT.json [--runs 300 --warmup 50 --conv-path tc]
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('plan')
    ap.add_argument('out')
    ap.add_argument('--runs', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--conv-path', default='tc', choices=['tc', 'simt'])
    args = ap.parse_args(argv)
    import bench_ours
    from tx2_infer_core.engine import Engine
    engine = Engine.load(args.plan, backend='cuda',
                         backend_options={'conv_path': args.conv_path})
    try:
        result = bench_ours.time_engine(engine, args.runs, args.warmup)
    finally:
        engine.close()
    write_json(args.out, dict(contenders=result))
    print(f'{Path(args.plan).name}: {result}', flush=True)


if __name__ == '__main__':
    main()
