"""The developer cache shared by the tools: where it is, its file locks, file digests.

Interpreters (provision_pythons.py), reference venvs (reference_venv.py), benchmark venvs and
the upstream test suite (upstream_suite.py) are cached outside the work tree, so fresh clones
on one machine reuse them::

    ${OPTREE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/optree-dev}/
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get('OPTREE_CACHE_DIR'):
        return Path(os.environ['OPTREE_CACHE_DIR']).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(xdg) / 'optree-dev'


@contextlib.contextmanager
def locked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Holds an exclusive lock on `path` (created if missing); `on_wait` runs when another
    process holds it, before waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a+') as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for block in iter(lambda: fh.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
