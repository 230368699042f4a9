#!/usr/bin/env python3
"""Find the CPython interpreters the tox environments need, and expose them to tox.

Usage::

    tools/pythons.py --link-dir DIR [--require py311] ENV...

ENV is a tox environment name: ``py311``, ``py312``, ``py313``, ``py314``, ``py314t`` (a
trailing ``t`` is a free-threaded build). For each one an interpreter is looked for, in order:

1. interpreters provisioned by the project (``$OPTREE_CACHE_DIR/pythons/*/bin``, built by
   ``tools/provision_pythons.py``; only finished builds, which carry its marker file),
2. pyenv installs (``$PYENV_ROOT/versions/X.Y.*``, highest patch release first),
3. ``pythonX.Y`` on PATH (pyenv shims that are not activated fail to run and are skipped).

Every candidate is run once to confirm its version and free-threading flavour. For each env
that has one, DIR gets a symlink ``pythonX.Y[t]`` to it, so that prepending DIR to PATH lets
tox (virtualenv's discovery) find it. The comma-separated list of envs found is printed on
stdout; a message per missing interpreter goes to stderr. An env named with ``--require``
that has no interpreter is an error.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_cache import cache_root

# Written into a provisioned interpreter's prefix once its smoke test passed
# (tools/provision_pythons.py); a prefix without it is a build in progress or a broken one.
PROVISIONED_MARKER = '.optree-provisioned'

# What to do when an env has no interpreter (shown with the skip message).
HOW_TO_GET = {
    'py311': "Debian 12's python3 is 3.11: apt-get install python3 python3-venv",
    'py312': 'no CPython 3.12 source on the Debian mirror: pyenv install 3.12',
    'py313': 'python3 tools/provision_pythons.py py313 builds it (or: pyenv install 3.13)',
    'py314': 'python3 tools/provision_pythons.py py314 builds it',
    'py314t': 'python3 tools/provision_pythons.py py314t builds it',
}

_ENV_RE = re.compile(r'^py3(\d+)(t?)$')
_PROBE = (
    'import json, sys, sysconfig; print(json.dumps([sys.implementation.name, '
    'list(sys.version_info[:3]), bool(sysconfig.get_config_var("Py_GIL_DISABLED"))]))'
)


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r'(\d+)\.(\d+)\.(\d+)', path)
    return tuple(int(g) for g in match.groups()) if match else (0, 0, 0)


def candidates(minor: int, free_threaded: bool) -> list[str]:
    name = f'python3.{minor}' + ('t' if free_threaded else '')
    found: list[str] = []
    provisioned = glob.glob(str(cache_root() / 'pythons' / '*' / 'bin' / name))
    found += sorted(
        (p for p in provisioned if (Path(p).parent.parent / PROVISIONED_MARKER).is_file()),
        key=_version_key,
        reverse=True,
    )
    pyenv_root = os.environ.get('PYENV_ROOT') or os.path.join(os.path.expanduser('~'), '.pyenv')
    pyenv = glob.glob(os.path.join(pyenv_root, 'versions', f'3.{minor}.*', 'bin', name))
    found += sorted(pyenv, key=_version_key, reverse=True)
    on_path = shutil.which(name)
    if on_path:
        found.append(on_path)
    return found


def check(python: str, minor: int, free_threaded: bool) -> bool:
    try:
        out = subprocess.run(
            [python, '-I', '-c', _PROBE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    impl, version, gil_disabled = json.loads(out.stdout)
    return impl == 'cpython' and version[:2] == [3, minor] and gil_disabled == free_threaded


def find(env: str) -> str | None:
    match = _ENV_RE.match(env)
    if not match:
        raise SystemExit(f'error: not a CPython tox env name: {env!r}')
    minor, free_threaded = int(match.group(1)), bool(match.group(2))
    for python in candidates(minor, free_threaded):
        if check(python, minor, free_threaded):
            return python
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('envs', nargs='+', metavar='ENV')
    parser.add_argument('--link-dir', required=True, type=Path)
    parser.add_argument('--require', action='append', default=[], metavar='ENV')
    args = parser.parse_args(argv)

    link_dir: Path = args.link_dir
    if link_dir.exists():
        shutil.rmtree(link_dir)
    link_dir.mkdir(parents=True)

    found: list[str] = []
    for env in args.envs:
        python = find(env)
        if python is None:
            if env in args.require:
                print(f'error: no interpreter for required tox env {env}', file=sys.stderr)
                return 1
            print(
                f'note: skipping tox env {env}: no interpreter found '
                f'({HOW_TO_GET.get(env, "try pyenv install")})',
                file=sys.stderr,
            )
            continue
        name = f'python3.{env[3:]}'  # py311 -> python3.11, py314t -> python3.14t
        (link_dir / name).symlink_to(os.path.realpath(python))
        print(f'note: tox env {env} uses {os.path.realpath(python)}', file=sys.stderr)
        found.append(env)
    print(','.join(found))
    return 0


if __name__ == '__main__':
    sys.exit(main())
