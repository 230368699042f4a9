#!/usr/bin/env python3
"""Create (or reuse) the virtualenvs the side-by-side benchmarks time other libraries in.

Usage::

    tools/bench_venvs.py KIND PYTHON

KIND is one of:

- ``reference``: optree==0.20.0 and pyperf. A venv of its own, since optree 0.20.0 has our
  import name (the test suite's reference venv from ``reference_venv.py`` stays untouched).
- ``others``: pyperf plus jax + jaxlib (CPU), torch==2.13.0 (CPU) and dm-tree, installed one
  library at a time from binary wheels only; a library without a wheel for this interpreter
  is left out and the reason recorded, the others still install.

Venvs are cached outside the work tree, keyed by interpreter and requirements, under
``${OPTREE_CACHE_DIR:-~/.cache/optree-dev}/bench/``; built behind a file lock and marked
ready only after a smoke test, like the reference venvs. On success the venv's python is
printed on stdout; its marker file ``.optree-bench-ready`` (JSON) next to ``bin/`` lists what
installed and why anything did not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dev_cache import cache_root, locked
from reference_venv import interpreter_key, probe

MARKER = '.optree-bench-ready'
PYPERF = 'pyperf==2.10.0'

# torch: only this exact spec takes the CPU wheel; any other spec downloads a CUDA build.
KINDS: dict[str, dict[str, object]] = {
    'reference': {
        'required': ['optree==0.20.0', PYPERF],
        'optional': {},
        'smoke': 'import optree, pyperf; assert optree.__version__ == "0.20.0"',
    },
    'others': {
        'required': [PYPERF],
        'optional': {
            'jax': (['jax', 'jaxlib'], 'import jax.tree_util'),
            'torch': (['torch==2.13.0'], 'import torch.utils._pytree'),
            'dm-tree': (['dm-tree'], 'import tree'),
        },
        'smoke': 'import pyperf',
    },
}


def log(msg: str) -> None:
    print(f'[bench_venvs] {msg}', file=sys.stderr, flush=True)


def venv_dir(kind: str, python: str) -> Path:
    spec = KINDS[kind]
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return cache_root() / 'bench' / f'{kind}-{interpreter_key(probe(python))}-{digest[:8]}'


def pip(py: Path, requirements: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(py), '-m', 'pip', 'install', '--quiet', *extra, *requirements]
    log('$ ' + ' '.join(cmd))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1')
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def failure_reason(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip() and not ln.startswith('WARNING: Location')
    ]
    return ' | '.join(lines[-3:])[:400] or f'pip exited with {proc.returncode}'


def build(kind: str, python: str, dest: Path) -> None:
    spec = KINDS[kind]
    info = probe(python)
    start = time.monotonic()
    if dest.exists():
        log(f'removing incomplete venv {dest}')
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([info['base_executable'], '-m', 'venv', str(dest)], check=True)
    py = dest / 'bin' / 'python'
    proc = pip(py, list(spec['required']), '--prefer-binary')  # type: ignore[arg-type]
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f'installing {spec["required"]} into {dest} failed')
    installed, failed = {}, {}
    for name, (requirements, smoke) in spec['optional'].items():  # type: ignore[attr-defined]
        proc = pip(py, requirements, '--only-binary', ':all:')
        if proc.returncode == 0:
            check = subprocess.run([str(py), '-I', '-c', smoke], capture_output=True, text=True)
            if check.returncode == 0:
                installed[name] = requirements
                continue
            proc = check
        failed[name] = failure_reason(proc)
        log(f'{name} is left out: {failed[name]}')
    smoke = subprocess.run([str(py), '-I', '-c', spec['smoke']], capture_output=True, text=True)
    if smoke.returncode != 0:
        sys.stderr.write(smoke.stdout + smoke.stderr)
        raise SystemExit(f'venv {dest} failed its smoke test')
    freeze = subprocess.run([str(py), '-m', 'pip', 'freeze'], capture_output=True, text=True)
    marker = {
        'kind': kind,
        'interpreter': info,
        'installed': installed,
        'failed': failed,
        'packages': freeze.stdout.split(),
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    }
    (dest / MARKER).write_text(json.dumps(marker, indent=2) + '\n')
    log(f'{kind} venv ready in {time.monotonic() - start:.0f} s: {dest}')


def ensure(kind: str, python: str) -> Path:
    dest = venv_dir(kind, python)
    py = dest / 'bin' / 'python'
    if not (dest / MARKER).is_file() or not py.exists():
        with locked(dest.with_name(dest.name + '.lock')):
            if not (dest / MARKER).is_file() or not py.exists():
                build(kind, python, dest)
    return py


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('kind', choices=sorted(KINDS))
    parser.add_argument('python', help='interpreter to base the venv on')
    args = parser.parse_args(argv)
    print(ensure(args.kind, args.python))
    return 0


if __name__ == '__main__':
    sys.exit(main())
