"""The per-layer INT8 report of ``tx2-infer calibrate``: a markdown table, a CSV and a PNG plot
of sensitivity against gain (matplotlib when installed; otherwise the plot is skipped and the
markdown says so)."""
import csv
import json
from pathlib import Path

COLUMNS = ('layer', 'method', 'x_scale', 'sensitivity', 'output_error', 'gain', 'int8')


def rows(report) -> list:
    """The per-layer rows of a schedule report, every column present."""
    return [{c: row.get(c, '') for c in COLUMNS} for row in report.get('layers', [])]


def _cell(value) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def markdown(report, title) -> str:
    """The report as markdown: a summary, the per-layer table and every decision."""
    lines = [f'# INT8 report: {title}', '']
    for key in ('budget', 'gain_source', 'held_out_agreement', 'frames'):
        if key in report:
            lines.append(f'- {key}: {_cell(report[key])}')
    lines += ['', '| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    lines += ['| ' + ' | '.join(_cell(r[c]) for c in COLUMNS) + ' |' for r in rows(report)]
    if report.get('decisions'):
        lines += ['', '## Decisions (in order)', '']
        lines += [f"- {d['step']}: {d['layer']} -> {'int8' if d['int8'] else 'float'} "
                  f"({d['why']})" for d in report['decisions']]
    return '\n'.join(lines) + '\n'


def plot(report, path, title) -> bool:
    """Sensitivity vs gain, INT8 layers marked; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    table = rows(report)
    fig, ax = plt.subplots(figsize=(7, 5))
    for chosen, marker in ((True, 'o'), (False, 'x')):
        pts = [r for r in table if bool(r['int8']) == chosen]
        ax.scatter([r['gain'] for r in pts], [r['sensitivity'] for r in pts], marker=marker,
                   label='INT8' if chosen else 'float')
        for r in pts:
            ax.annotate(r['layer'], (r['gain'], r['sensitivity']), fontsize=6)
    ax.set_xlabel(f"gain ({report.get('gain_source', '')})")
    ax.set_ylabel('sensitivity (loss of agreement, layer alone INT8)')
    ax.set_title(title)
    ax.legend()
    fig.savefig(str(path), dpi=120, bbox_inches='tight')
    plt.close(fig)
    return True


def write_report(report, folder, name) -> dict:
    """Write ``<name>.md``, ``<name>.csv``, ``<name>.json`` and ``<name>.png`` (when it can)
    into ``folder``; returns {kind: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f'{name}.{k}' for k in ('md', 'csv', 'json', 'png')}
    with open(paths['csv'], 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows(report))
    paths['json'].write_text(json.dumps(report, indent=1, default=str))
    text = markdown(report, name)
    if plot(report, paths['png'], name):
        text += f'\n![sensitivity vs gain]({paths["png"].name})\n'
    else:
        paths.pop('png')
        text += '\n(no plot: matplotlib is not installed; pip install matplotlib)\n'
    paths['md'].write_text(text)
    return paths
