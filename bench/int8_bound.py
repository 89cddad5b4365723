"""How much a per-layer INT8 schedule can save at batch 1, from measured per-layer times.

Reads a ``bench_int8_layers.py`` result (every conv of a model timed alone on the same GPU in
one run: fp16 mma, int8 mma, int8 dp4a) and, per model, sums the FP16 times and the best a
schedule could pick per layer (the fastest of the three; INT8 only where it is faster, with
no Quantize launch and no accuracy cost counted, so a real schedule can only do worse):

    bound = sum(min(fp16, int8 mma, int8 dp4a)) / sum(fp16)

    python bench/int8_bound.py [bench/results/int8_layers_h200.json] [--out F.json]
"""
import argparse
import json
from pathlib import Path

from benchlib import write_json

PATHS = ('fp16_mma', 'int8_mma', 'int8_dp4a')


def model_bounds(layers) -> dict:
    """{model: {'fp16_ms', 'best_ms', 'bound', 'int8_layers', 'layers'}} of ``layers``."""
    out = {}
    for row in layers:
        times = {p: row[p]['ms'] * row['count'] for p in PATHS}
        best = min(times, key=times.get)
        m = out.setdefault(row['model'], {'fp16_ms': 0.0, 'best_ms': 0.0, 'int8_layers': 0,
                                          'layers': 0})
        m['fp16_ms'] += times['fp16_mma']
        m['best_ms'] += times[best]
        m['int8_layers'] += best != 'fp16_mma'
        m['layers'] += 1
    for m in out.values():
        m['bound'] = round(m['best_ms'] / m['fp16_ms'], 3)
        m['fp16_ms'], m['best_ms'] = round(m['fp16_ms'], 4), round(m['best_ms'], 4)
    return out


def main():
    here = Path(__file__).parent / 'results'
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('layers', nargs='?', default=str(here / 'int8_layers_h200.json'))
    parser.add_argument('--out', default=str(here / 'int8_bound_h200.json'))
    args = parser.parse_args()
    data = json.loads(Path(args.layers).read_text())
    result = {'what': ' '.join(__doc__.split('\n\n')[1].split()), 'source': Path(args.layers).name,
              'gpu': data.get('gpu'), 'versions': data.get('versions'),
              'models': model_bounds(data['layers'])}
    write_json(args.out, result, indent=1)
    for name, m in result['models'].items():
        print(f"{name}: fp16 {m['fp16_ms']:.3f} ms, best per layer {m['best_ms']:.3f} ms "
              f"(x{m['bound']}), int8 on {m['int8_layers']}/{m['layers']} layers")


if __name__ == '__main__':
    main()
