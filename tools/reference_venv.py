#!/usr/bin/env python3
"""Create (or reuse) a virtualenv holding the reference optree==0.20.0 from PyPI.

Our package and the reference share the import name ``optree``, so the reference lives in a
virtualenv of its own, one per interpreter (version, build and free-threading flavour). Tests
and benchmarks talk to it through a subprocess started with that venv's python.

Usage::

    tools/reference_venv.py PYTHON [DEST]

PYTHON is the interpreter to base the venv on (a venv's python is fine: its base interpreter
is used). Besides optree==0.20.0 the venv gets the libraries of optree.integrations
(pyproject.toml's `test-integrations` extra, markers evaluated for PYTHON). DEST defaults to a
cache directory outside the work tree, keyed by the interpreter and those requirements, so
fresh clones on the same machine reuse it::

    ${OPTREE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/optree-dev}/reference/optree-0.20.0-<key>-<reqs>

On success the path of the reference venv's python is printed on stdout (nothing else is).
The venv is built behind a file lock and marked ready only after a smoke test, so concurrent
callers (parallel tox envs) wait for each other, a second call is instant and a broken build
is never reused.
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

REFERENCE_REQUIREMENT = 'optree==0.20.0'
# The third-party libraries of optree.integrations go into the reference venv as well (the same
# pinned list the test envs install, pyproject.toml's `test-integrations` extra), so the
# integration tests compare both implementations with the same numpy/attrs/torch/jax.
INTEGRATIONS_EXTRA = 'test-integrations'
PYPROJECT = Path(__file__).resolve().parent.parent / 'pyproject.toml'
REFERENCE_VERSION = '0.20.0'
MARKER = '.optree-reference-ready'

_PROBE = r"""
import json, os, sys, sysconfig
base = getattr(sys, '_base_executable', None) or sys.executable
print(json.dumps({
    'impl': sys.implementation.name,
    'version': '.'.join(map(str, sys.version_info[:3])),
    'major_minor': '%d.%d' % sys.version_info[:2],
    'abiflags': getattr(sys, 'abiflags', ''),
    'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),
    'base_executable': os.path.realpath(base),
}))
"""

_SMOKE = r"""
import optree
assert optree.__version__ == {version!r}, optree.__version__
leaves, spec = optree.tree_flatten({{'a': (1, 2), 'b': [3, None]}})
assert leaves == [1, 2, 3], leaves
assert optree.tree_unflatten(spec, leaves) == {{'a': (1, 2), 'b': [3, None]}}
print(optree.__file__)
"""


def log(msg: str) -> None:
    print(f'[reference_venv] {msg}', file=sys.stderr, flush=True)


def probe(python: str) -> dict:
    """Describe an interpreter (version, free-threading, real base executable)."""
    out = subprocess.run(
        [python, '-I', '-c', _PROBE], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def interpreter_key(info: dict) -> str:
    digest = hashlib.sha256(info['base_executable'].encode()).hexdigest()[:10]
    flavour = 't' if info['free_threaded'] else ''
    return f'{info["impl"]}-{info["version"]}{flavour}-{digest}'


def integration_requirements() -> list[str]:
    import tomllib

    with open(PYPROJECT, 'rb') as fh:
        extras = tomllib.load(fh)['project']['optional-dependencies']
    return list(extras.get(INTEGRATIONS_EXTRA, []))


def requirements() -> list[str]:
    return [REFERENCE_REQUIREMENT, *integration_requirements()]


def default_dest(python: str) -> Path:
    info = probe(python)
    # Keyed by the requirements too: a changed pin gets a venv of its own, never a stale one.
    digest = hashlib.sha256('\n'.join(requirements()).encode()).hexdigest()[:8]
    return (
        cache_root() / 'reference' / f'optree-{REFERENCE_VERSION}-{interpreter_key(info)}-{digest}'
    )


def venv_python(dest: Path) -> Path:
    return dest / 'bin' / 'python'


def is_ready(dest: Path) -> bool:
    py = venv_python(dest)
    # The venv's python is a symlink to the base interpreter: it must still resolve.
    return (dest / MARKER).is_file() and py.exists() and os.access(py, os.X_OK)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log('$ ' + ' '.join(cmd))
    return subprocess.run(cmd, check=True, **kwargs)


def build(python: str, dest: Path) -> None:
    info = probe(python)
    base = info['base_executable']
    start = time.monotonic()
    if dest.exists():
        log(f'removing incomplete reference venv {dest}')
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run([base, '-m', 'venv', str(dest)])
    py = str(venv_python(dest))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1')
    run(
        [py, '-m', 'pip', 'install', '--quiet', '--prefer-binary', *requirements()],
        env=env,
    )
    smoke = subprocess.run(
        [py, '-I', '-c', _SMOKE.format(version=REFERENCE_VERSION)],
        capture_output=True,
        text=True,
    )
    if smoke.returncode != 0:
        sys.stderr.write(smoke.stdout + smoke.stderr)
        raise SystemExit(f'reference venv {dest} failed its smoke test')
    marker = {
        'requirements': requirements(),
        'interpreter': info,
        'module': smoke.stdout.strip(),
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    }
    (dest / MARKER).write_text(json.dumps(marker, indent=2) + '\n')
    log(f'reference venv ready in {time.monotonic() - start:.1f} s: {dest}')


def ensure(python: str, dest: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of a ready reference venv's python, building the venv if needed."""
    dest_path = Path(dest).expanduser().absolute() if dest else default_dest(python)
    if is_ready(dest_path):
        return venv_python(dest_path)
    with locked(dest_path.with_name(dest_path.name + '.lock')):
        if not is_ready(dest_path):  # another process may have built it meanwhile
            build(python, dest_path)
    return venv_python(dest_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('python', help='interpreter to base the reference venv on')
    parser.add_argument('dest', nargs='?', help='venv directory (default: a cache directory)')
    args = parser.parse_args(argv)
    print(ensure(args.python, args.dest))
    return 0


if __name__ == '__main__':
    sys.exit(main())
