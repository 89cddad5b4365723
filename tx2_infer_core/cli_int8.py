"""The INT8 parts of ``tx2-infer`` (issue 11): the build flags and the ``calibrate`` command.

    tx2-infer build yolov3-tiny.cfg -o tiny.tx2plan --precision mixed \\
        --calibration-images frames/ --accuracy-budget 0.005
    tx2-infer calibrate yolov3-tiny.cfg --report int8_report/ -o tiny-mixed.tx2plan
"""
import argparse
import functools
import sys
from pathlib import Path


def parse_budget(text):
    """'0.005' -> 0.005, a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"bad accuracy budget '{text}': expected a number in "
                                         '[0, 1), e.g. 0.005 (0.5%% of the agreement)')
    return value


def add_int8_args(parser) -> None:
    """--calibration-images, --accuracy-budget, --calibration-method."""
    from tx2_infer_core.int8.calibrate import METHODS
    parser.add_argument('--calibration-images', metavar='DIR',
                        help='int8/mixed: a folder of >= 8 real images of the scene (every '
                             '4th is held out); default: bundled photos + video frames')
    parser.add_argument('--accuracy-budget', type=parse_budget, default=0.005, metavar='X',
                        help='mixed: the agreement with FP32 it may lose (default 0.005)')
    parser.add_argument('--calibration-method', choices=METHODS, default='percentile',
                        help='int8: the activation threshold method (default percentile; '
                             'mixed tries each per layer)')


def int8_options(args) -> dict:
    """The ``Engine.build`` int8_options of the parsed flags (None for float precisions)."""
    if getattr(args, 'precision', 'fp32') not in ('int8', 'mixed'):
        return None
    return {'calibration_images': args.calibration_images,
            'accuracy_budget': args.accuracy_budget, 'method': args.calibration_method}


def cmd_calibrate(args, open_engine):
    """calibrate MODEL: build int8/mixed, write the per-layer report (and the plan);
    ``open_engine(args)`` is the CLI's (passed in: cli imports this module)."""
    from tx2_infer_core.int8.report import write_report
    with open_engine(args) as engine:
        info = engine.meta['int8']
        paths = write_report(info.get('report', {}), args.report,
                             f'{Path(args.model).stem}-{args.precision}')
        chosen = sum(1 for lq in info['schedule'].values() if lq.get('int8', True))
        print(f'{args.precision}: {chosen} layers in INT8 ({info.get("gpu")} gains); held-out '
              f"agreement {info.get('report', {}).get('held_out_agreement', 'n/a')}")
        for kind, path in sorted(paths.items()):
            print(f'wrote {path}')
        if 'png' not in paths:
            print('no plot: matplotlib is not installed', file=sys.stderr)
        if args.output:
            engine.save(args.output)
            print(f'wrote {args.output}')


def add_calibrate_command(sub, model_args, open_engine) -> None:
    """The ``calibrate`` subcommand (``model_args`` adds the model flags; ``open_engine`` is
    the CLI's)."""
    calibrate = sub.add_parser('calibrate', help='INT8 calibration, schedule and report')
    model_args(calibrate)
    calibrate.add_argument('--precision', choices=('mixed', 'int8'), default='mixed',
                           help='mixed (default): INT8 where it fits the budget; int8: every '
                                'layer')
    add_int8_args(calibrate)
    calibrate.add_argument('--report', default='int8_report', metavar='DIR',
                           help='folder of the per-layer report (default int8_report)')
    calibrate.add_argument('-o', '--output', help='also write the plan (.tx2plan)')
    calibrate.set_defaults(func=functools.partial(cmd_calibrate, open_engine=open_engine))
