"""Static typing: a typed usage example must pass mypy on our package exactly as on optree 0.20.0.

mypy runs on tests/typing_example.py twice, once resolving ``optree`` in this environment (our
package, with its ``py.typed`` and ``_C.pyi``) and once in the reference venv
(``--python-executable``). Both must accept it, and both must reject a broken variant with the
same errors. The example also runs, so it cannot drift from what the API does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness.integration_support import require

_TESTS = Path(__file__).resolve().parent
_EXAMPLE = _TESTS / 'harness' / 'typing_example.py'
_CONFIG = _TESTS.parent / 'pyproject.toml'

# Lines appended to the example: each is wrong in a way the annotations must catch.
_BROKEN = """

def broken() -> None:
    leaves, spec = optree.tree_flatten([1], none_is_leaf='yes')
    count: str = spec.num_leaves
    optree.tree_map(len, [1], namespace=1)
    optree.treespec_tuple([1, 2])
    accessor: PyTreeAccessor = optree.tree_paths([1])[0]
"""


def _mypy(tmp_path: Path, python: str | None) -> dict[str, list[str]]:
    """mypy on the example and its broken variant at once: ``{file name: [line code, ...]}``."""
    broken = tmp_path / 'broken_example.py'
    broken.write_text(_EXAMPLE.read_text() + _BROKEN)
    command = [
        sys.executable,
        '-m',
        'mypy',
        '--config-file',
        str(_CONFIG),
        '--cache-dir',
        str(tmp_path / f'cache-{python is None}'),
        '--no-error-summary',
        '--hide-error-context',
        '--no-pretty',
        '--show-error-codes',
    ]
    if python is not None:
        command += ['--python-executable', python]
    proc = subprocess.run(
        [*command, str(_EXAMPLE), str(broken)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert proc.returncode in {0, 1}, proc.stdout + proc.stderr
    found: dict[str, list[str]] = {_EXAMPLE.name: [], broken.name: []}
    for line in proc.stdout.splitlines():
        match = re.match(r'^(.*?):(\d+): error: .*\[(.*)\]$', line)
        if match:
            # Only the line and the error code: mypy spells our types' origins differently.
            found[Path(match[1]).name].append(f'{match[2]} {match[3]}')
    return found


@pytest.fixture(scope='module')
def mypy_available():
    require('mypy')


def test_example_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(_EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'typing example ok'


def test_example_type_checks_like_the_reference(mypy_available, reference_server, tmp_path):
    ours = _mypy(tmp_path, None)
    theirs = _mypy(tmp_path, reference_server.python)
    assert theirs[_EXAMPLE.name] == [], f'the example is not valid optree 0.20.0 code: {theirs}'
    assert ours[_EXAMPLE.name] == [], f'mypy rejects the example on our package: {ours}'
    # The broken variant: rejected, with the same errors as on optree 0.20.0.
    assert len(theirs['broken_example.py']) >= 4, theirs
    assert ours['broken_example.py'] == theirs['broken_example.py']
