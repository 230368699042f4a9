"""Turn side-by-side results into a Markdown report, a PNG chart and a console summary.

Input is the JSON ``side_by_side.py`` writes (``results/side_by_side.json``, or
``results/side_by_side-<condition>.json``), so a report can be redrawn from a finished run:
``python benchmarks/report.py results/side_by_side.json`` (it writes the ``.md`` and ``.png``
of the same name).
Ratios are their time / our time: above 1 means ours is faster.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE = 'optree-0.20.0'
NESTED_SHAPES = ('dict100x10', 'model_s', 'model_m', 'model_l')
# The trees of the general rows of the budget: built-in containers and namedtuples only.
GENERAL_SHAPES = ('list1000', 'chain200', *NESTED_SHAPES)
# Rows on every tree, whatever its node types.
EVERY_TREE_BUDGETS = {'tree_map_3': 3.0, 'treespec_eq': 2.0}
# Rows of one tree: the optree.dataclasses model, the classes registered with Python callbacks,
# the 3-leaf tree (per-call overhead).
TREE_BUDGETS = {
    ('tree_flatten', 'dcmodel'): 8.0,
    ('tree_unflatten', 'dcmodel'): 3.0,
    ('tree_map', 'dcmodel'): 4.0,
    ('tree_flatten', 'pycustom'): 3.0,
    ('tree_unflatten', 'pycustom'): 1.5,
    ('tree_flatten', 'tiny3'): 3.0,
    ('tree_unflatten', 'tiny3'): 3.0,
    ('tree_map', 'tiny3'): 3.0,
}


@dataclass(frozen=True)
class Budget:
    """A target of the performance budget (docs/performance.rst) for one row, vs optree 0.20.0."""

    min_ratio: float
    max_ns_per_leaf: float | None = None

    def text(self) -> str:
        ratio = f'≥{self.min_ratio:g}x'
        if self.max_ns_per_leaf is None:
            return ratio
        return f'{ratio}, ≤{self.max_ns_per_leaf:g} ns/leaf'


def budget_for(op: str, shape: str) -> Budget | None:
    """The performance budget (docs/performance.rst), row by row: ``tree_map`` over 3 trees and
    treespec ``==`` on every tree; the dataclass model, Python-callback and 3-leaf trees'
    own rows; then the general rows on the trees of built-in containers: flatten-like
    operations on the list and on the nested dict/tuple/namedtuple trees, the others on every
    one of them. The general rows leave out the trees of custom nodes, whose time goes into
    the user's Python flatten functions, and flatten_up_to."""
    if op in EVERY_TREE_BUDGETS:
        return Budget(EVERY_TREE_BUDGETS[op])
    if (op, shape) in TREE_BUDGETS:
        return Budget(TREE_BUDGETS[op, shape])
    if shape not in GENERAL_SHAPES:
        return None
    if op == 'tree_flatten' and shape == 'list1000':
        return Budget(5.0, 10.0)
    if op in ('tree_flatten', 'tree_leaves', 'tree_structure'):
        return Budget(3.0) if shape in NESTED_SHAPES else None
    if op in (
        'tree_unflatten',
        'tree_map',
        'tree_map_with_path',
        'tree_flatten_with_path',
        'treespec_hash',
        'treespec_pickle',
    ):
        return Budget(2.0)
    return None


def format_time(seconds: float) -> str:
    for unit, scale in (('s', 1.0), ('ms', 1e-3), ('µs', 1e-6), ('ns', 1e-9)):
        if seconds >= scale or unit == 'ns':
            value = seconds / scale
            return f'{value:.3g}' if value < 100 else f'{value:.0f}'
    raise AssertionError


def format_time_unit(seconds: float) -> str:
    for unit, scale in (('s', 1.0), ('ms', 1e-3), ('µs', 1e-6), ('ns', 1e-9)):
        if seconds >= scale or unit == 'ns':
            return f'{format_time(seconds)} {unit}'
    raise AssertionError


def cell(results: dict[str, Any], lib: str, op: str, shape: str) -> dict[str, Any] | None:
    return results['cells'].get(lib, {}).get(op, {}).get(shape)


def ratio(results: dict[str, Any], lib: str, op: str, shape: str) -> float | None:
    ours, theirs = cell(results, 'ours', op, shape), cell(results, lib, op, shape)
    if ours and theirs and 'median' in ours and 'median' in theirs:
        return theirs['median'] / ours['median']
    return None


def ns_per_leaf(results: dict[str, Any], lib: str, op: str, shape: str) -> float | None:
    entry = cell(results, lib, op, shape)
    if not entry or 'median' not in entry:
        return None
    return entry['median'] * 1e9 / results['shapes'][shape]['leaves']


def budget_verdict(results: dict[str, Any], op: str, shape: str) -> tuple[str, bool | None]:
    """('≥3x ✅', True), or ('—', None) where there is no budget or nothing to compare."""
    budget = budget_for(op, shape)
    if budget is None:
        return '—', None
    r = ratio(results, REFERENCE, op, shape)
    if r is None:
        return f'{budget.text()}: n/a', None
    met = r >= budget.min_ratio
    measured = f'{r:.2f}x'
    if budget.max_ns_per_leaf is not None:
        per_leaf = ns_per_leaf(results, 'ours', op, shape)
        met = met and per_leaf is not None and per_leaf <= budget.max_ns_per_leaf
        measured += f', {per_leaf:.1f} ns/leaf' if per_leaf is not None else ''
    return f'{budget.text()}: {"✅" if met else "❌"} {measured}', met


def library_title(lib: dict[str, Any]) -> str:
    version = lib.get('version', '')
    return lib['label'] if lib['label'].endswith(version) else f'{lib["label"]} {version}'


def active_libraries(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [lib for lib in results['libraries'] if lib['status'] == 'ok']


def condition(results: dict[str, Any]) -> str:
    meta = results['meta']
    return str(meta.get('condition') or f'CPython {meta["python"]}')


def markdown(
    results: dict[str, Any], microbench: str | None = None, stem: str = 'side_by_side'
) -> str:
    meta = results['meta']
    libs = active_libraries(results)
    out = [
        f'# Side-by-side benchmarks: {condition(results)}',
        '',
        f'CPython {meta["python"]} on {meta["machine"]}; {meta["date"]}; run took '
        f'{meta["duration_s"] / 60:.1f} min. Load average {meta["load_before"]} before, '
        f'{meta["load_after"]} after the run: times are CPU time of the timing thread, so '
        'waiting for a core does not count, but caches shared with other jobs still do; '
        'ratios from one run are the comparison, absolute times are indicative.',
        '',
        f'Timing: pyperf {meta["pyperf"]}, {meta["method"]}.',
        '',
        'Libraries: ' + '; '.join(library_title(lib) for lib in libs) + '.',
    ]
    skipped = [lib for lib in results['libraries'] if lib['status'] != 'ok']
    if skipped:
        out.append(
            'Skipped: ' + '; '.join(f'{lib["label"]} ({lib["reason"]})' for lib in skipped) + '.'
        )
    out += ['', 'Trees:', '']
    labels = dict(results['operations'])
    for name, shape in results['shapes'].items():
        timed = shape.get('operations')
        only = f'; timed: {" / ".join(labels[op] for op in timed)}' if timed else ''
        out.append(
            f'- `{name}`: {shape["description"]} ({shape["leaves"]} leaves, {shape["nodes"]} '
            f'nodes{only})'
        )

    flat = results['shapes'].get('list1000') and [
        (lib['label'], ns_per_leaf(results, lib['key'], 'tree_flatten', 'list1000')) for lib in libs
    ]
    if flat:
        out += [
            '',
            '**`tree_flatten`, list of 1,000 ints, per leaf:** '
            + ', '.join(f'{label} {value:.1f} ns' for label, value in flat if value is not None)
            + ' (budget: ≤10 ns per leaf and ≥5x faster than optree 0.20.0).',
        ]

    header = ['operation', 'tree', 'ours'] + [lib['label'] for lib in libs[1:]]
    header.append('budget vs optree 0.20.0')
    out += [
        '',
        '## Times and ratios',
        '',
        'Median time per call, with its spread (median absolute deviation) for ours; for the '
        'others, their median and in parentheses their time / our time (**above 1: ours is '
        'faster**). The budget column checks the performance budget against optree 0.20.0 '
        '(— : no target '
        'for that row).',
        '',
        '| ' + ' | '.join(header) + ' |',
        '|' + '---|' * 2 + '---:|' * (len(libs)) + ':---|',
    ]
    notes: dict[str, dict[str, set[str]]] = {}
    for op, label in results['operations']:
        for shape in results['shapes']:
            if not any(cell(results, lib['key'], op, shape) for lib in results['libraries']):
                continue  # not timed on this tree
            row = [label, f'`{shape}`']
            ours = cell(results, 'ours', op, shape)
            if ours and 'median' in ours:
                spread = 100 * ours['mad'] / ours['median']
                digits = 1 if spread < 1 else 0
                row.append(f'{format_time_unit(ours["median"])} ±{spread:.{digits}f}%')
            else:
                row.append('N/A')
            for lib in libs[1:]:
                entry = cell(results, lib['key'], op, shape)
                if not entry:
                    row.append('—')
                elif 'na' in entry:
                    row.append('N/A')
                    notes.setdefault(lib['label'], {}).setdefault(entry['na'], set()).add(
                        f'{label} / {shape}'
                    )
                else:
                    r = ratio(results, lib['key'], op, shape)
                    rtext = f' ({r:.2f})' if r is not None else ''
                    row.append(f'{format_time_unit(entry["median"])}{rtext}')
                    if entry.get('impl'):
                        notes.setdefault(lib['label'], {}).setdefault(
                            f'{label} is {entry["impl"]}', set()
                        )
            row.append(budget_verdict(results, op, shape)[0])
            out.append('| ' + ' | '.join(row) + ' |')
    if notes:
        out += ['', 'Notes on the competitors:', '']
        for label, reasons in notes.items():
            for reason, where in reasons.items():
                scope = f' ({", ".join(sorted(where))})' if where and len(where) < 8 else ''
                out.append(f'- {label}: {"N/A: " if where else ""}{reason}{scope}')

    out += ['', '## Performance budget against optree 0.20.0', '']
    out += budget_summary(results)
    out += ['', '## Geometric mean of the ratios per operation', '']
    out += geomean_table(results)
    out += ['', f'![ratios]({stem}.png)', '']
    if microbench:
        out += [microbench, '']
    return '\n'.join(out)


def budget_summary(results: dict[str, Any]) -> list[str]:
    met, missed = [], []
    for op, label in results['operations']:
        for shape in results['shapes']:
            text, ok = budget_verdict(results, op, shape)
            if ok is None:
                continue
            (met if ok else missed).append(f'{label} / `{shape}`: {text}')
    lines = [f'{len(met)} of {len(met) + len(missed)} rows with a target meet it.']
    if missed:
        lines += ['', 'Not met:', ''] + [f'- {what}' for what in missed]
    return lines


def geomean(values: list[float]) -> float | None:
    return math.exp(statistics.fmean(map(math.log, values))) if values else None


def geomean_table(results: dict[str, Any]) -> list[str]:
    libs = active_libraries(results)[1:]
    lines = [
        '| operation | ' + ' | '.join(lib['label'] for lib in libs) + ' |',
        '|---|' + '---:|' * len(libs),
    ]
    for op, label in results['operations']:
        row = [label]
        for lib in libs:
            values = [
                r
                for shape in results['shapes']
                if (r := ratio(results, lib['key'], op, shape)) is not None
            ]
            g = geomean(values)
            row.append('N/A' if g is None else f'{g:.2f}')
        lines.append('| ' + ' | '.join(row) + ' |')
    return lines


def console_summary(results: dict[str, Any], output_dir: Path) -> str:
    libs = active_libraries(results)[1:]
    lines = [
        f'{condition(results)}. Ratio their time / our time (above 1: ours faster), '
        f'geometric mean over {len(results["shapes"])} trees:',
        '',
    ]
    width = max(len(label) for _, label in results['operations'])
    lines.append(' ' * (width + 2) + ''.join(f'{lib["label"]:>22}' for lib in libs))
    for op, label in results['operations']:
        row = f'  {label:<{width}}'
        for lib in libs:
            values = [
                r
                for shape in results['shapes']
                if (r := ratio(results, lib['key'], op, shape)) is not None
            ]
            g = geomean(values)
            row += f'{"N/A" if g is None else f"{g:.2f}x":>22}'
        lines.append(row)
    per_leaf = [
        (lib['label'], ns_per_leaf(results, lib['key'], 'tree_flatten', 'list1000'))
        for lib in active_libraries(results)
    ]
    if any(v is not None for _, v in per_leaf):
        lines += [
            '',
            'tree_flatten, list of 1,000 ints, ns per leaf: '
            + ', '.join(f'{label} {v:.1f}' for label, v in per_leaf if v is not None),
        ]
    lines += ['', *budget_summary(results)]
    tag = results['meta'].get('tag')
    stem = f'side_by_side-{tag}' if tag else 'side_by_side'
    lines += [
        '',
        f'Full table: {output_dir / f"{stem}.md"}; chart: {output_dir / f"{stem}.png"}; '
        f'raw pyperf JSON: {output_dir / (f"raw-{tag}" if tag else "raw")}',
    ]
    return '\n'.join(lines)


def chart(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    libs = active_libraries(results)[1:]
    shapes = list(results['shapes'])
    ops = results['operations']
    cols = 3
    rows = math.ceil(len(ops) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    width = 0.8 / max(len(libs), 1)
    colors = plt.get_cmap('tab10').colors
    for index, (op, label) in enumerate(ops):
        ax = axes[index // cols][index % cols]
        for j, lib in enumerate(libs):
            xs, ys = [], []
            for i, shape in enumerate(shapes):
                r = ratio(results, lib['key'], op, shape)
                if r is not None:
                    xs.append(i + (j - (len(libs) - 1) / 2) * width)
                    ys.append(r)
            # Bars start at 1 (ours): up where ours is faster, down where it is slower.
            ax.bar(
                xs,
                [y - 1 for y in ys],
                bottom=1,
                width=width,
                color=colors[j % len(colors)],
                label=lib['label'],
            )
        ax.axhline(1.0, color='black', linewidth=1)
        targets = [budget_for(op, shape) for shape in shapes]
        for i, budget in enumerate(targets):
            if budget is not None:
                ax.hlines(
                    budget.min_ratio,
                    i - 0.45,
                    i + 0.45,
                    colors='red',
                    linestyles='dashed',
                    linewidth=1,
                )
        ax.set_yscale('log')
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=35, ha='right', fontsize=8)
        ax.tick_params(axis='y', labelsize=8)
        ax.grid(axis='y', which='both', alpha=0.3)
    for index in range(len(ops), rows * cols):
        axes[index // cols][index % cols].axis('off')
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(
        f'{title}\nTheir time / our time (log scale; bars up from 1: ours is faster; '
        'red dashes: performance budget vs optree 0.20.0)',
        y=0.995,
        fontsize=11,
    )
    fig.legend(
        handles,
        labels,
        loc='upper center',
        bbox_to_anchor=(0.5, 0.97),
        ncol=len(libs),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def microbench_markdown(path: Path) -> str | None:
    """The Google Benchmark JSON of benchmarks/cpp as a Markdown section, if it exists."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows: dict[str, dict[str, Any]] = {}
    for bench in data.get('benchmarks', []):
        if bench.get('error_occurred'):
            rows.setdefault(bench['run_name'], {})['error'] = bench.get('error_message', '?')
            continue
        if bench.get('run_type') == 'aggregate':
            rows.setdefault(bench['run_name'], {})[bench['aggregate_name']] = bench
        else:  # no repetitions: a single run stands for the median
            rows.setdefault(bench['run_name'], {}).setdefault('median', bench)
    context = data.get('context', {})
    load = ', '.join(f'{x:.1f}' for x in context.get('load_avg', [])) or '?'
    out = [
        '## C++ core micro-benchmarks (Google Benchmark)',
        '',
        f'`benchmarks/cpp/microbench.cpp`, embedded CPython {context.get("python", "?")}, no '
        f'Python bindings in the way; {context.get("num_cpus", "?")} CPUs, load '
        f'{load}. CPU time per call, median over repetitions, and its '
        'coefficient of variation; "per item" is per leaf (flatten, unflatten, flatten_up_to), '
        'per treespec node (hash, ==, pickle state, dispatch) or per probe.',
        '',
        '| benchmark | CPU time | per item | CV |',
        '|---|---:|---:|---:|',
    ]
    for name, aggs in rows.items():
        if 'error' in aggs:
            out.append(f'| `{name}` | error: {aggs["error"]} | | |')
            continue
        median = aggs.get('median')
        if median is None:
            continue
        scale = {'ns': 1e-9, 'us': 1e-6, 'ms': 1e-3, 's': 1.0}[median.get('time_unit', 'ns')]
        per_item = next(
            (median[k] for k in ('per_leaf', 'per_node', 'per_probe') if k in median), None
        )
        cv = aggs.get('cv', {}).get('cpu_time')
        out.append(
            f'| `{name}` | {format_time_unit(median["cpu_time"] * scale)} | '
            f'{format_time_unit(per_item) if per_item is not None else ""} | '
            f'{f"{100 * cv:.1f}%" if cv is not None else ""} |'
        )
    return '\n'.join(out)


def write(
    results: dict[str, Any],
    output_dir: Path,
    microbench: Path | None,
    stem: str = 'side_by_side',
) -> str:
    """Writes <stem>.md and .png into output_dir; returns the console summary."""
    section = microbench_markdown(microbench) if microbench else None
    (output_dir / f'{stem}.md').write_text(markdown(results, section, stem))
    chart(results, output_dir / f'{stem}.png', condition(results))
    return console_summary(results, output_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', type=Path, help='side_by_side.json of a finished run')
    parser.add_argument('--microbench', type=Path, help='Google Benchmark JSON to include')
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(write(results, args.results.parent, args.microbench, args.results.stem))
    return 0


if __name__ == '__main__':
    sys.exit(main())
