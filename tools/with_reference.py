#!/usr/bin/env python3
"""Run a command with OPTREE_REFERENCE_PYTHON pointing at optree 0.20.0 for *this* Python.

Usage (tox runs it with the env's python)::

    python tools/with_reference.py pytest tests

The differential tests need the reference optree==0.20.0 on the same Python version (and
free-threading flavour) as the interpreter under test. If OPTREE_REFERENCE_PYTHON is already
set (the Makefile passes the one for .venv through tox) and matches this interpreter, it is
kept; otherwise the matching reference venv is created or reused via tools/reference_venv.py.
Then the command replaces this process (looked up on PATH, so tox's env bin comes first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_venv


def _flavour() -> tuple[int, int, bool]:
    return (*sys.version_info[:2], bool(sysconfig.get_config_var('Py_GIL_DISABLED')))


def _matches(python: str) -> bool:
    if not python or not os.access(python, os.X_OK):
        return False
    try:
        info = reference_venv.probe(python)
    except (OSError, subprocess.CalledProcessError):
        return False
    major, minor = (int(x) for x in info['major_minor'].split('.'))
    return (major, minor, info['free_threaded']) == _flavour()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    given = os.environ.get('OPTREE_REFERENCE_PYTHON', '')
    if given and _matches(given):
        reference = given
    else:
        reference = str(reference_venv.ensure(sys.executable))
    os.environ['OPTREE_REFERENCE_PYTHON'] = reference
    print(f'OPTREE_REFERENCE_PYTHON={reference}', file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
