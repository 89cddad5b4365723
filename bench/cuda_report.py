"""Markdown tables of ``bench_cuda.py``'s JSON results (latency, build time, allocation)."""

COLUMNS = [('ours', 'ours (kernels)'), ('ours_with_copies', 'ours + H2D/D2H'),
           ('eager', 'torch eager'), ('cuda_graph', 'eager + CUDA graph'),
           ('reduce-overhead', 'compile r-o'), ('max-autotune', 'compile m-a')]


def _cell(entry) -> str:
    if not entry:
        return '-'
    if 'median_ms' in entry:
        cell = f"{entry['median_ms']:.3f} / {entry['p99_ms']:.3f}"
        if entry.get('repeats', 1) > 1:  # the rounds' medians, min-max
            cell += ' ({:.3f}-{:.3f}, n={})'.format(*entry['spread_ms'], entry['repeats'])
        return cell
    if entry.get('finished') is False:
        return f"not finished in {entry['capped_s']:.0f} s"
    if 'capped_s' in entry:
        return f"capped at {entry['capped_s']:.0f} s"
    return 'error' if 'error' in entry else entry.get('skipped', '-')[:30]


def latency_table(result) -> list:
    """One row per model: median / p99 ms per contender, compile seconds, ratio."""
    head = ['model'] + [title for _, title in COLUMNS] + ['compile s (r-o / m-a)',
                                                          'ours / best compile']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for name, m in result['models'].items():
        c = m.get('contenders', {})
        cs = [c.get(k, {}).get('compile_s') for k in ('reduce-overhead', 'max-autotune')]
        comp = ' / '.join(f'{s:.0f}' if s else '-' for s in cs)
        ratio = m.get('ratios', {}).get('ours/best_compile')
        cells = [name] + [_cell(c.get(k)) for k, _ in COLUMNS]
        cells += [comp, f'{ratio:.2f}' if ratio else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def profile_tables(result) -> list:
    """The top launches of our graph for each model where a torch contender is faster."""
    lines = []
    for name, m in result['models'].items():
        prof = m.get('profile')
        best = m.get('ratios', {}).get('ours/best_torch')
        if not prof or best is None or best <= 1.0:
            continue
        lines += ['', f"### {name}: ours is {best:.2f}x the best PyTorch contender; top "
                  f"launches ({prof['method']}, sum {prof['sum_ms']:.3f} ms)", '',
                  '| # | node | op | kernel | grid | ms | TFLOP/s |', '|' + '---|' * 7]
        for r in prof['top']:
            tf = f"{r['tflops']:.1f}" if r['tflops'] else '-'
            lines.append(f"| {r['index']} | {r['node'][:40]} | {r['op']} | {r['kernel']} | "
                         f"{r['grid']} | {r['ms']:.4f} | {tf} |")
        lines += ['', '| kernel | launches | total ms |', '|---|---|---|']
        for k, v in prof['by_kernel'].items():
            lines.append(f"| {k} | {v['launches']} | {v['ms']:.3f} |")
    return lines


def build_table(result) -> list:
    """Build seconds per model: cold, warm, kernel compile, save, load."""
    lines = ['| model | cold build s | of which nvcc s | warm build s | save s | load s | '
             'plan MB |', '|---|---|---|---|---|---|---|']
    for name, b in result['models'].items():
        if 'cold_build_s' not in b:
            lines.append(f"| {name} | {b.get('error', '-')[:60]} |")
            continue
        lines.append(f"| {name} | {b['cold_build_s']:.2f} | {b['cold_kernel_compile_s']:.2f} "
                     f"| {b['warm_build_s']:.2f} | {b['save_s']:.2f} | {b['load_s']:.2f} | "
                     f"{b['plan_bytes'] / 1e6:.1f} |")
    return lines


def alloc_table(result) -> list:
    """Per-frame allocation latency per model and contender."""
    lines = ['| model | tensors | contender | median ms | p99 ms |', '|---|---|---|---|---|']
    for name, a in result['models'].items():
        for cname, c in a.get('contenders', {}).items():
            cell = (f"{c['median_ms']:.4f} | {c['p99_ms']:.4f}" if 'median_ms' in c
                    else f"{c.get('error', '-')[:50]} | -")
            lines.append(f"| {name} | {a.get('tensors', '-')} | {cname} | {cell} |")
    return lines


def accuracy_table(result) -> list:
    """Max relative error (max |a-b| / max |b|) and relative L2 of every contender vs torch
    FP32, and of ours vs each torch FP16 contender, on the race input."""
    lines = ['| model | compared | max rel error | rel L2 |', '|---|---|---|---|']
    for name, m in result['models'].items():
        acc = m.get('accuracy', {})
        rows = [(f'{c} vs torch FP32', v) for c, v in acc.get('vs_fp32', {}).items()]
        rows += [(f'ours vs {c}', v) for c, v in acc.get('ours_vs', {}).items()]
        for what, v in rows:
            lines.append(f"| {name} | {what} | {v['max_rel_error']:.2e} | {v['rel_l2']:.2e} |")
    return lines if len(lines) > 2 else []


def markdown(latency, build, alloc) -> str:
    """The whole report."""
    meta = latency['meta']
    lines = [f"# Our FP16 engine vs PyTorch FP16 on {meta.get('device')}", '',
             f"driver {meta.get('driver')}, torch {meta.get('torch')} (CUDA "
             f"{meta.get('torch_cuda')}, cuDNN {meta.get('cudnn')}, Triton "
             f"{meta.get('triton')}), our commit {meta.get('commit')} "
             f"(uncommitted: {meta.get('dirty') or 'none'}), sources {meta.get('sources')}.",
             f"Batch 1, median / p99 ms over {meta.get('runs')} CUDA-event timed runs after "
             f"{meta.get('warmup')} warm-up runs; convolution nets run channels-last in "
             'PyTorch. "ours (kernels)" replays the graph of kernels alone, like the PyTorch '
             'contenders (input already on the GPU); "+ H2D/D2H" is the per-frame graph.', '']
    lines += latency_table(latency) + [''] + [f'- {n}' for n in meta.get('notes', [])]
    acc = accuracy_table(latency)
    if acc:
        lines += ['', '## Outputs on the same input (a real photo; BERT: fixed tokens)', ''] + acc
    lines += profile_tables(latency)
    lines += ['', '## Build time (ONNX/Darknet -> loadable FP16 plan, kernels compiled)', '']
    lines += build_table(build)
    lines += ['', '## Allocation per frame: pooled arena vs per-tensor', '']
    lines += alloc_table(alloc)
    return '\n'.join(lines) + '\n'
