#!/usr/bin/env python3
"""Make the CPython interpreters of the tox matrix available, building the missing ones.

Usage::

    tools/provision_pythons.py [--ci | --no-ci] [--no-build] ENV...

ENV is a tox environment name (``py311`` ... ``py314t``). An env whose interpreter the
machine already has (see ``tools/pythons.py``: provisioned, pyenv, PATH) is left alone.
A missing one is built from the upstream CPython source tarball that Debian ships in its
pool, when we know one for it:

=========  =======================================================  ==================
env        tarball (``pool/main/p/...`` on the Debian mirror)       prefix
=========  =======================================================  ==================
py313      ``python3.13/python3.13_3.13.15.orig.tar.xz``            ``3.13.15``
py314      ``python3.14/python3.14_3.14.7.orig.tar.xz``             ``3.14.7``
py314t     same tarball, configured with ``--disable-gil``          ``3.14.7t``
=========  =======================================================  ==================

The mirror is the one the machine's own apt sources name (``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d/*.list`` / ``*.sources``), read at run time; the tarball's SHA-256
is checked against the value pinned here before it is unpacked.

Each interpreter is built at its final prefix (the prefix is baked into the binaries)::

    $OPTREE_CACHE_DIR/pythons/<version>[t]/

behind a file lock (concurrent runs wait for each other), and the marker file
``<prefix>/.optree-provisioned`` is written only after a smoke test passed, so a second run
is instant and a broken or half-finished build is never reused: a prefix without the marker
is wiped and rebuilt. The build output goes to ``$OPTREE_CACHE_DIR/pythons/<name>.build.log``;
its tail is shown when the build fails.

Missing interpreters, by mode:

* CI (``--ci``, the default when ``CI=true``): a missing 3.13, 3.14 or 3.14t that cannot be
  built is an error (exit status 1). 3.12 has no source on the mirror: when it is missing the
  run says so loudly and the env is skipped.
* Locally: a missing interpreter that cannot be built (or ``--no-build``) is skipped with a
  message saying how to get it.

Progress goes to stderr. Exit status 0 unless an interpreter required under CI is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pythons  # tools/pythons.py: interpreter discovery, shared with the Makefile
from _env import in_ci
from dev_cache import cache_root, locked, sha256_of

MARKER = pythons.PROVISIONED_MARKER
TOOLS_DIR = Path(__file__).resolve().parent

# The Debian packages the CPython build needs for ssl, zlib, sqlite3, ctypes,
# readline, lzma, bz2, dbm, uuid and zstd (3.14's compression.zstd).
BUILD_DEPS = (
    'build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev '
    'libsqlite3-dev libreadline-dev libncurses-dev uuid-dev libgdbm-dev libgdbm-compat-dev '
    'libzstd-dev libexpat1-dev xz-utils'
).split()

DEBIAN_ARCHIVE_SUFFIX = '/debian'  # the main archive (not debian-security, not ports)


@dataclasses.dataclass(frozen=True)
class Source:
    version: str
    pool_path: str  # relative to the Debian archive root
    sha256: str


SOURCE_3_13 = Source(
    '3.13.15',
    'pool/main/p/python3.13/python3.13_3.13.15.orig.tar.xz',
    '1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76',
)
SOURCE_3_14 = Source(
    '3.14.7',
    'pool/main/p/python3.14/python3.14_3.14.7.orig.tar.xz',
    '3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81',
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    env: str
    source: Source
    free_threaded: bool

    @property
    def name(self) -> str:  # the prefix directory name: 3.14.7, 3.14.7t
        return self.source.version + ('t' if self.free_threaded else '')

    @property
    def executable(self) -> str:  # what `make altinstall` installs: python3.14, python3.14t
        major_minor = '.'.join(self.source.version.split('.')[:2])
        return f'python{major_minor}' + ('t' if self.free_threaded else '')

    def configure_args(self, prefix: Path) -> list[str]:
        args = [f'--prefix={prefix}', '--disable-test-modules']
        if self.free_threaded:
            args.append('--disable-gil')
        return args


RECIPES = {
    'py313': Recipe('py313', SOURCE_3_13, free_threaded=False),
    'py314': Recipe('py314', SOURCE_3_14, free_threaded=False),
    'py314t': Recipe('py314t', SOURCE_3_14, free_threaded=True),
}

# Run by every provisioned interpreter before its marker is written. Formatted with
# `free_threaded` and `has_interpreters` (3.14+: concurrent.interpreters).
_SMOKE = r"""
import ctypes, json, sqlite3, ssl, subprocess, sys, sysconfig, tempfile, venv, zlib, lzma, bz2
free_threaded = {free_threaded!r}
assert bool(sysconfig.get_config_var('Py_GIL_DISABLED')) == free_threaded
if free_threaded:
    assert sys._is_gil_enabled() is False, 'the GIL is enabled on a free-threaded build'
if {has_interpreters!r}:
    import concurrent.interpreters
    interp = concurrent.interpreters.create()
    interp.exec('import zlib; assert zlib.decompress(zlib.compress(b"x")) == b"x"')
    interp.close()
else:
    import _interpreters
assert ctypes.c_int(7).value == 7
assert sqlite3.connect(':memory:').execute('select 6 * 7').fetchone() == (42,)
ssl.create_default_context()
assert zlib.decompress(zlib.compress(b'optree')) == b'optree'
with tempfile.TemporaryDirectory() as tmp:
    venv.create(tmp, with_pip=True)
    out = subprocess.run([tmp + '/bin/python', '-m', 'pip', '--version'],
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith('pip '), out
print(json.dumps({{'version': sys.version, 'pip': out.split()[1]}}))
"""


def log(msg: str) -> None:
    print(f'[provision_pythons] {msg}', file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = '!' * 78
    print(f'{bar}\n!!! {msg}\n{bar}', file=sys.stderr, flush=True)


class ProvisionError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The Debian mirror, from the machine's apt sources


def _one_line_style_uris(text: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        fields = line.split('#', 1)[0].split()
        if not fields or (fields[0] != 'deb-src' and fields[0] != 'deb'):
            continue
        fields = fields[1:]
        if fields and fields[0].startswith('['):  # options: [arch=amd64 signed-by=...]
            while fields and not fields[0].endswith(']'):
                fields.pop(0)
            fields = fields[1:]
        if fields:
            uris.append(fields[0])
    return uris


def _deb822_uris(text: str) -> list[str]:
    uris = []
    for stanza in re.split(r'\n\s*\n', text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith('#') or not line.strip():
                continue
            if line[0].isspace() and key:  # continuation line
                fields[key] += ' ' + line.strip()
                continue
            key, _, value = line.partition(':')
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get('enabled', 'yes').lower() == 'no':
            continue
        if (
            'deb' not in fields.get('types', '').split()
            and 'deb-src' not in fields.get('types', '').split()
        ):
            continue
        uris += fields.get('uris', '').split()
    return uris


def apt_source_uris(root: Path = Path('/etc/apt')) -> list[str]:
    """Every archive URI the machine's apt sources name, in file order."""
    uris: list[str] = []
    files = [root / 'sources.list', *sorted((root / 'sources.list.d').glob('*.list'))]
    for path in files:
        with contextlib.suppress(OSError):
            uris += _one_line_style_uris(path.read_text())
    for path in sorted((root / 'sources.list.d').glob('*.sources')):
        with contextlib.suppress(OSError):
            uris += _deb822_uris(path.read_text())
    return uris


def debian_mirrors() -> list[str]:
    """The Debian main archives among the apt sources (e.g. ``http://<host>/debian``)."""
    mirrors = []
    for uri in apt_source_uris():
        uri = uri.rstrip('/')
        if uri.startswith(('http://', 'https://')) and uri.endswith(DEBIAN_ARCHIVE_SUFFIX):
            if uri not in mirrors:
                mirrors.append(uri)
    return mirrors


# ---------------------------------------------------------------------------------------------
# Download, verify, build


def fetch_source(source: Source, downloads: Path) -> Path:
    """The verified tarball, from the download cache or the machine's Debian mirror."""
    downloads.mkdir(parents=True, exist_ok=True)
    dest = downloads / Path(source.pool_path).name
    if dest.is_file() and sha256_of(dest) == source.sha256:
        return dest
    mirrors = debian_mirrors()
    if not mirrors:
        raise ProvisionError(
            'no Debian archive (http(s)://.../debian) in /etc/apt/sources.list{,.d/*}; '
            f'put {Path(source.pool_path).name} (sha256 {source.sha256}) into {downloads}'
        )
    errors = []
    for mirror in mirrors:
        url = f'{mirror}/{source.pool_path}'
        log(f'downloading {url}')
        fd, tmp_name = tempfile.mkstemp(dir=downloads, prefix='.download-')
        try:
            with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as resp:
                shutil.copyfileobj(resp, out)
            actual = sha256_of(Path(tmp_name))
            if actual != source.sha256:
                errors.append(f'{url}: sha256 {actual}, expected {source.sha256}')
                continue
            os.replace(tmp_name, dest)
            return dest
        except OSError as exc:
            errors.append(f'{url}: {exc}')
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
    raise ProvisionError('could not fetch a verified tarball:\n  ' + '\n  '.join(errors))


def is_provisioned(prefix: Path, recipe: Recipe) -> bool:
    return (prefix / MARKER).is_file() and os.access(prefix / 'bin' / recipe.executable, os.X_OK)


def _run_logged(cmd: list[str], cwd: Path, logfile: Path, step: str) -> None:
    start = time.monotonic()
    log(f'  {step}: {" ".join(cmd)}')
    with open(logfile, 'a') as out:
        out.write(f'\n===== {step}: {" ".join(cmd)} (in {cwd})\n')
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ProvisionError(f'{step} failed with exit status {proc.returncode}')
    log(f'  {step} done in {time.monotonic() - start:.0f} s')


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return ''.join(path.read_text(errors='replace').splitlines(keepends=True)[-lines:])
    return ''


def build(recipe: Recipe, root: Path, jobs: int) -> Path:
    """Build and install ``recipe`` at ``root/<name>``; return the interpreter's path."""
    prefix = root / recipe.name
    logfile = root / f'{recipe.name}.build.log'
    workdir = root.parent / 'build-pythons' / recipe.name
    start = time.monotonic()
    log(f'building CPython {recipe.name} into {prefix} (log: {logfile})')
    try:
        subprocess.run(['bash', str(TOOLS_DIR / 'ensure_apt.sh'), *BUILD_DEPS], check=True)
    except subprocess.CalledProcessError as exc:
        raise ProvisionError(f'installing the build dependencies failed ({exc})') from None
    tarball = fetch_source(recipe.source, root.parent / 'downloads')
    for stale in (prefix, workdir):
        if stale.exists():
            log(f'  removing unfinished {stale}')
            shutil.rmtree(stale)
    workdir.mkdir(parents=True)
    logfile.write_text(f'CPython {recipe.name} from {tarball.name} ({recipe.source.sha256})\n')
    try:
        _run_logged(['tar', '-xf', str(tarball)], workdir, logfile, 'unpack')
        (srcdir,) = [p for p in workdir.iterdir() if p.is_dir()]
        _run_logged(['./configure', *recipe.configure_args(prefix)], srcdir, logfile, 'configure')
        _run_logged(['make', f'-j{jobs}'], srcdir, logfile, 'make')
        _run_logged(['make', 'altinstall'], srcdir, logfile, 'make altinstall')
        python = prefix / 'bin' / recipe.executable
        smoke = subprocess.run(
            [
                str(python),
                '-I',
                '-c',
                _SMOKE.format(
                    free_threaded=recipe.free_threaded,
                    has_interpreters=recipe.source is SOURCE_3_14,
                ),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        with open(logfile, 'a') as out:
            out.write(f'\n===== smoke test\n{smoke.stdout}{smoke.stderr}')
        if smoke.returncode != 0:
            raise ProvisionError('the smoke test failed')
    except (ProvisionError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        tail = _tail(logfile)
        raise ProvisionError(
            f'building CPython {recipe.name} failed: {exc}\n--- last lines of {logfile}:\n{tail}'
        ) from None
    elapsed = time.monotonic() - start
    marker = {
        'source': dataclasses.asdict(recipe.source),
        'configure': recipe.configure_args(prefix),
        'smoke': json.loads(smoke.stdout),
        'build_seconds': round(elapsed),
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    }
    (prefix / MARKER).write_text(json.dumps(marker, indent=2) + '\n')
    shutil.rmtree(workdir, ignore_errors=True)
    log(f'CPython {recipe.name} ready in {elapsed:.0f} s ({elapsed / 60:.1f} min): {python}')
    return python


def ensure(recipe: Recipe, root: Path, jobs: int) -> Path:
    prefix = root / recipe.name
    if is_provisioned(prefix, recipe):
        return prefix / 'bin' / recipe.executable
    with locked(
        root / f'.{recipe.name}.lock',
        on_wait=lambda: log(f'waiting for another build of {recipe.name}'),
    ):
        if is_provisioned(prefix, recipe):  # built by a concurrent run meanwhile
            return prefix / 'bin' / recipe.executable
        return build(recipe, root, jobs)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('envs', nargs='+', metavar='ENV')
    ci_default = in_ci()
    parser.add_argument(
        '--ci',
        action=argparse.BooleanOptionalAction,
        default=ci_default,
        help='a missing buildable interpreter is an error (default: $CI)',
    )
    parser.add_argument(
        '--no-build',
        dest='build',
        action='store_false',
        help='only report what is missing; build nothing',
    )
    parser.add_argument('--jobs', type=int, default=int(os.environ.get('OPTREE_BUILD_JOBS', 2)))
    args = parser.parse_args(argv)

    root = cache_root() / 'pythons'
    failed: list[str] = []
    for env in args.envs:
        existing = pythons.find(env)
        if existing:
            log(f'{env}: {existing}')
            continue
        recipe = RECIPES.get(env)
        if recipe is None:
            how = pythons.HOW_TO_GET.get(env, 'install it with pyenv')
            if args.ci:
                loud(
                    f'CI: no interpreter for {env}, which cannot be built here ({how}); '
                    f'the {env} tox env is SKIPPED'
                )
            else:
                log(f'{env}: no interpreter, skipped ({how})')
            continue
        if not args.build:
            log(f'{env}: no interpreter; `python3 tools/provision_pythons.py {env}` builds it')
            continue
        try:
            log(f'{env}: {ensure(recipe, root, args.jobs)}')
        except ProvisionError as exc:
            print(str(exc), file=sys.stderr)
            if args.ci:
                loud(f'CI: CPython {recipe.name} for {env} could not be provisioned')
                failed.append(env)
            else:
                log(
                    f'{env}: skipped; fix the problem above and rerun '
                    f'`python3 tools/provision_pythons.py {env}` (or `make test`)'
                )
    if failed:
        print(f'error: required interpreters missing: {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
