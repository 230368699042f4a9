"""When an optional test library is missing: skip here, fail under CI where tox installs it.

The libraries of optree.integrations come from pyproject.toml's ``test-integrations`` extra,
which tox installs (and tools/reference_venv.py installs next to the reference): numpy and attrs
on every Python, torch (the CPU wheel on this machine's disk) and jax only on Python 3.11. mypy
comes from the ``test`` extra, on Python 3.11.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from harness.environment import in_ci

# Library -> the Python versions on which the test-integrations extra installs it.
_INSTALLED_ON = {
    'numpy': None,  # every version
    'attrs': None,
    'torch': {(3, 11)},
    'jax': {(3, 11)},
    'mypy': {(3, 11)},
    'distributed': None,  # dask.distributed, from the test extra (optree.parallel's executor test)
}


def _importable(library: str) -> bool:
    return importlib.util.find_spec(library) is not None


def require(library: str) -> None:
    """Skip the calling test unless ``library`` imports; a library the extras provide for this
    Python must be there under CI=true."""
    if _importable(library):
        return
    versions = _INSTALLED_ON[library]
    here = f'{sys.version_info[0]}.{sys.version_info[1]}'
    if versions is None or sys.version_info[:2] in versions:
        if in_ci():
            pytest.fail(
                f'{library} is not installed, but the test extras install it on Python {here}',
                pytrace=False,
            )
        pytest.skip(f'{library} is not installed (install the test extras)')
    provided = ', '.join('.'.join(map(str, version)) for version in sorted(versions))
    pytest.skip(f'{library}: the test extras provide it on Python {provided} only, not {here}')
