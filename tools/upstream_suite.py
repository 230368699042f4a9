#!/usr/bin/env python3
"""Run optree 0.20.0's own test suite (from its PyPI sdist) against the installed optree.

Usage (tox runs it with each env's python, after our own suite)::

    python tools/upstream_suite.py [PYTEST_ARGS...]

The sdist is fetched once with pip (the machine's configured index), its SHA-256 checked
against the value pinned here, and its ``tests/`` folder and ``pyproject.toml`` (which holds
the suite's pytest settings, warnings as errors included) unpacked into a cache directory
outside the work tree::

    ${OPTREE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/optree-dev}/upstream/optree-0.20.0/

The suite runs from there, so the work tree's ``optree/`` (which has no compiled core) can
never shadow the installed package. Nothing of the suite is copied into this repository.

Two pybind11 build flags that the suite imports from ``optree._C`` are supplied by
``tests/upstream/pybind11_flags.py``: the unpacked suite's ``helpers.py`` gets one line that
imports it first, so that the suite's child processes see them too (the only change made to
the suite). ``tests/upstream/upstream_shim.py`` is loaded as a pytest plugin: it imports the
flags module as well, and marks the tests
listed in ``tests/upstream/expected_failures.txt`` as ``xfail(strict=True)``, so a listed test
that starts to pass is reported as a failure.

The suite runs as ``--jobs`` pytest processes at once (default: 2, or 1 on a single core),
each taking every N-th test of the same collection, so the machine's cores share it; their
outputs are printed one after the other, then one pytest-style summary line for the whole.
Other arguments go to pytest (e.g. ``-k tree_iter`` or ``-x``). Exit status: non-zero when any
process failed or crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_cache import cache_root, locked, sha256_of

VERSION = '0.20.0'
SDIST = f'optree-{VERSION}.tar.gz'
SDIST_SHA256 = 'c7403eb0f2b2a060a97803a8f52904212df85ed6cff4b0eeed9cc6e38c2cf88d'
# What the suite needs from the sdist: its tests and the pytest settings in pyproject.toml.
MEMBERS = ('tests/', 'pyproject.toml')
MARKER = '.optree-upstream-ready'
SHIM_DIR = Path(__file__).resolve().parent.parent / 'tests' / 'upstream'
# The suite's child processes import its helpers module but not our plugin: the helpers
# module is made to import the flags module first (copied next to it under this name).
FLAGS_MODULE = SHIM_DIR / 'pybind11_flags.py'
FLAGS_COPY = '_optree_upstream_pybind11_flags'
HELPERS_PROLOGUE = (
    f"import {FLAGS_COPY}  # noqa: F401 (added by optree's tools/upstream_suite.py)\n"
)


def log(msg: str) -> None:
    print(f'[upstream_suite] {msg}', file=sys.stderr, flush=True)


def download_sdist(dest_dir: Path) -> Path:
    sdist = dest_dir / SDIST
    if sdist.exists() and sha256_of(sdist) == SDIST_SHA256:
        return sdist
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        log(f'downloading the optree {VERSION} sdist')
        subprocess.run(
            [
                sys.executable,
                '-m',
                'pip',
                'download',
                '--disable-pip-version-check',
                '--quiet',
                '--no-deps',
                '--no-binary',
                ':all:',
                '--dest',
                tmp,
                f'optree=={VERSION}',
            ],
            check=True,
        )
        fetched = Path(tmp) / SDIST
        if not fetched.exists():
            raise SystemExit(f'[upstream_suite] pip did not produce {SDIST}')
        digest = sha256_of(fetched)
        if digest != SDIST_SHA256:
            raise SystemExit(
                f'[upstream_suite] {SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}'
            )
        os.replace(fetched, sdist)
    return sdist


def install_flags(tests: Path) -> None:
    """Makes the suite's helpers module import our pybind11 flags module first."""
    shutil.copyfile(FLAGS_MODULE, tests / f'{FLAGS_COPY}.py')
    helpers = tests / 'helpers.py'
    text = helpers.read_text()
    if HELPERS_PROLOGUE not in text:
        helpers.write_text(HELPERS_PROLOGUE + text)


def marker_text() -> str:
    # A new flags module or prologue unpacks the suite anew.
    shim = hashlib.sha256(FLAGS_MODULE.read_bytes() + HELPERS_PROLOGUE.encode()).hexdigest()
    return f'{SDIST_SHA256} {shim}\n'


def ensure_suite() -> Path:
    """The unpacked suite (a directory holding tests/ and pyproject.toml), cached."""
    root = cache_root() / 'upstream'
    suite = root / f'optree-{VERSION}'

    def ready() -> bool:
        marker = suite / MARKER
        return marker.exists() and marker.read_text() == marker_text()

    if ready():
        return suite
    with locked(root / '.lock'):
        if ready():
            return suite
        sdist = download_sdist(root)
        shutil.rmtree(suite, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix='.unpack-'))
        try:
            prefix = f'optree-{VERSION}/'
            with tarfile.open(sdist) as archive:
                members = []
                for member in archive.getmembers():
                    name = member.name.removeprefix(prefix)
                    if not (member.isfile() or member.isdir()):
                        continue
                    if any(name == m or name.startswith(m) for m in MEMBERS):
                        member.name = name
                        members.append(member)
                archive.extractall(staging, members=members, filter='data')
            install_flags(staging / 'tests')
            (staging / MARKER).write_text(marker_text())
            os.replace(staging, suite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f'unpacked the suite into {suite}')
    return suite


# pytest's closing line, framed by '=' or (with -q) bare: "3 failed, 9 passed in 5.10s (0:00:05)".
_SUMMARY = re.compile(r'^(?:=+ )?(\d+ [a-z]+\b.*) in ([\d.]+)s(?: \([\d:]+\))?(?: =+)?$')
_COUNT = re.compile(r'(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)')


def run_shards(command: list[str], jobs: int, cwd: Path, env: dict[str, str]) -> int:
    """Runs the suite as `jobs` pytest processes, each on every jobs-th test; prints their
    output one after the other and then one summary line for the whole suite."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [Path(tmp) / f'shard-{index}.log' for index in range(jobs)]
        processes = []
        for index, output in enumerate(outputs):
            with open(output, 'w') as fh:
                processes.append(
                    subprocess.Popen(
                        [*command, f'--upstream-shard={index}/{jobs}'],
                        cwd=cwd,
                        env=env,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [process.wait() for process in processes]
        totals: dict[str, int] = {}
        for index, (output, code) in enumerate(zip(outputs, codes, strict=True)):
            summary = None
            print(f'[upstream_suite] shard {index + 1}/{jobs}, exit status {code}:', flush=True)
            for line in output.read_text(errors='replace').splitlines():
                match = _SUMMARY.match(line)
                if match:
                    # Reworded, so that only the combined line below reads as a pytest summary.
                    summary = match.group(1)
                    line = f'shard {index + 1}/{jobs}: {summary}'
                print(line)
            if summary is None:
                print(
                    f'[upstream_suite] shard {index + 1}/{jobs} ended without a summary '
                    f'(exit status {code}): counted as 1 failed',
                    flush=True,
                )
                totals['failed'] = totals.get('failed', 0) + 1
                continue
            for number, kind in _COUNT.findall(summary):
                if kind in ('deselected', 'warning', 'warnings'):
                    continue
                kind = 'errors' if kind.startswith('error') else kind
                totals[kind] = totals.get(kind, 0) + int(number)
    order = ('failed', 'passed', 'skipped', 'xfailed', 'xpassed', 'errors')
    counts = ', '.join(f'{totals[kind]} {kind}' for kind in order if totals.get(kind))
    print(f'==== {counts or "no tests ran"} in {time.monotonic() - start:.2f}s ====', flush=True)
    if all(code == 0 for code in codes):
        return 0
    return next(code for code in codes if code != 0) if 'failed' not in totals else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1))
    options, pytest_args = parser.parse_known_args(argv)
    suite = ensure_suite()
    env = dict(os.environ)
    # Only the shim's directory: the work tree itself must not be importable.
    env['PYTHONPATH'] = str(SHIM_DIR)
    env['OPTREE_UPSTREAM_EXPECTED_FAILURES'] = str(SHIM_DIR / 'expected_failures.txt')
    env['OPTREE_UPSTREAM_WHOLE_SUITE'] = '0' if pytest_args else '1'
    command = [
        sys.executable,
        '-m',
        'pytest',
        '-p',
        'upstream_shim',
        '-p',
        'no:cacheprovider',
        '--rootdir',
        str(suite),
        '-c',
        str(suite / 'pyproject.toml'),
        '-q',
        '-rfE',
        *pytest_args,
        str(suite / 'tests'),
    ]
    log(f'optree {VERSION} suite from {suite} on {sys.executable}, {options.jobs} process(es)')
    if options.jobs <= 1:
        return subprocess.run(command, cwd=suite, env=env, check=False).returncode
    return run_shards(command, options.jobs, suite, env)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
