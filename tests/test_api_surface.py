"""Every public name of optree 0.20.0 exists here, of the same kind and signature; names that
depend on the interpreter (treespec_frozendict) behave as optree 0.20.0's.

The comparison itself lives in tools/api_surface.py (also usable by hand); this test runs its
``describe`` under the reference interpreter and under ours and fails listing every difference.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from harness.integration_support import require

_TOOL = Path(__file__).resolve().parent.parent / 'tools' / 'api_surface.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('api_surface', _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def surfaces(reference_server):
    tool = _load_tool()
    ours = tool.run_describe(sys.executable)
    theirs = tool.run_describe(reference_server.python)
    return tool, ours, theirs


def test_no_public_name_is_missing(surfaces):
    tool, ours, theirs = surfaces
    problems, _ = tool.compare(ours, theirs)
    assert not problems, f'{len(problems)} difference(s) from optree 0.20.0:\n' + '\n'.join(
        problems
    )


def test_the_check_covers_the_api(surfaces):
    """Guard the check itself: it must see the whole API, not an empty description."""
    _, ours, theirs = surfaces
    top = theirs['optree']
    assert top['available'] and len(top['all']) >= 90, top.get('all')
    for module in ('optree.ops', 'optree.accessors', 'optree.dataclasses', 'optree.pytree'):
        assert theirs[module]['available'] and theirs[module]['names'], module
    assert ours['optree']['names']['tree_flatten']['kind'] == 'function'
    assert theirs['optree']['names']['PyTreeSpec']['members'], 'class members are compared'


@pytest.mark.parametrize('library', ['numpy', 'torch', 'jax', 'attrs'])
def test_integration_module_compared(surfaces, library):
    """An integration module is compared, not passed over, wherever its library is installed."""
    require(library)
    _, ours, theirs = surfaces
    name = f'optree.integrations.{library}'
    assert ours[name]['available'], ours[name]
    assert theirs[name]['available'], f'the reference venv lacks {library}: {theirs[name]}'
    assert 'tree_ravel' in ours[name]['names'] or library == 'attrs'


def test_compare_reports_differences():
    """The comparison flags a missing name, a changed kind and a changed signature."""
    tool = _load_tool()
    theirs = {
        'optree': {
            'available': True,
            'all': ['f', 'g', 'C'],
            'names': {
                'f': {'kind': 'function', 'signature': '(x, /)'},
                'g': {'kind': 'function', 'signature': '(y)'},
                'C': {
                    'kind': 'class',
                    'signature': '()',
                    'mro': ['C', 'object'],
                    'members': {
                        'm': {'kind': 'function', 'signature': '(self)'},
                    },
                },
            },
        },
    }
    ours = {
        'optree': {
            'available': True,
            'all': ['f', 'C'],
            'names': {
                'f': {'kind': 'function', 'signature': '(x)'},
                'C': {'kind': 'class', 'signature': '()', 'mro': ['C', 'object'], 'members': {}},
            },
        },
    }
    problems, _ = tool.compare(ours, theirs)
    text = '\n'.join(problems)
    assert 'optree.__all__ differs' in text
    assert 'optree.g: missing' in text
    assert 'optree.f: signature differs' in text
    assert 'optree.C.m: missing' in text


def _full_inventory(tool):
    """An inventory with an entry for every public module and name of the installed package."""
    inventory = {}
    for module in tool.public_modules():
        inventory[module] = 'py:module'
        info = tool.describe_module(module)
        for name in info['names'] if info['available'] else ():
            inventory[f'{module}.{name}'] = 'py:function'
    return inventory


def test_public_modules_are_found_by_walking_the_package():
    """The docs check finds every module the API comparison knows, without a list of its own."""
    tool = _load_tool()
    found = tool.public_modules()
    expected = set(tool._BASE_MODULES) | {f'optree.integrations.{n}' for n in tool._INTEGRATIONS}
    assert expected <= set(found), sorted(expected - set(found))
    assert not [name for name in found if any(p.startswith('_') for p in name.split('.'))]


def test_docs_coverage_reports_a_missing_entry():
    tool = _load_tool()
    inventory = _full_inventory(tool)
    unavailable = [p for p in tool.docs_coverage(inventory) if 'cannot be imported' in p]
    # Only integration modules whose library this interpreter lacks can be left unchecked.
    assert all(p.startswith('optree.integrations.') for p in unavailable), unavailable
    assert tool.docs_coverage(inventory) == unavailable
    del inventory['optree.tree_map']
    del inventory['optree.accessors']
    problems = tool.docs_coverage(inventory)
    assert 'optree.tree_map: no entry in the docs (function)' in problems
    assert 'optree.accessors: no module entry in the docs' in problems
    assert 'optree.accessors: module optree.accessors has no entry in the docs' in problems


def test_read_inventory(tmp_path):
    import zlib

    body = (
        'optree py:module 0 api/optree.html#module-$ -\n'
        'optree.tree_map py:function 1 api/optree.html#$ -\n'
        'quickstart std:doc -1 quickstart.html Quick start\n'
    )
    path = tmp_path / 'objects.inv'
    path.write_bytes(
        b'# Sphinx inventory version 2\n# Project: optree\n# Version: 0\n'
        b'# The remainder of this file is compressed using zlib.\n' + zlib.compress(body.encode())
    )
    assert _load_tool().read_inventory(str(path)) == {
        'optree': 'py:module',
        'optree.tree_map': 'py:function',
        'quickstart': 'std:doc',
    }


def test_version_dependent_names(differential):
    """treespec_frozendict only works where the interpreter has frozendict (3.15+)."""
    differential.check(
        'L = optree.treespec_leaf()\n',
        [
            "'treespec_frozendict' in optree.__all__",
            "hasattr(optree, 'treespec_frozendict')",
            "optree.treespec_frozendict({'a': L})",
            'optree.treespec_frozendict()',
            'hasattr(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__), '
            "'frozendict')",
            'optree.PyTreeKind.__members__.keys()',
        ],
        check_message=True,
    )
