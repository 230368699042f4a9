#!/usr/bin/env python3
"""Describe (or compare) the public API of whichever ``optree`` an interpreter imports.

Usage::

    python tools/api_surface.py describe              # JSON description on stdout
    python tools/api_surface.py compare REFERENCE_PY  # ours (this python) vs the reference
    python tools/api_surface.py docs-coverage OBJECTS_INV  # every public name documented?

``compare`` runs ``describe`` under both interpreters (the reference one is optree 0.20.0 in
its own venv, see tools/reference_venv.py), prints every difference and exits 1 if there is
any. ``tests/test_api_surface.py`` makes the same comparison part of the test suite.

What counts as public: every module of the package that the reference imports (found by walking
``optree`` and ``optree.integrations``), and in each module its ``__all__`` plus every
non-underscore attribute that belongs to optree (defined in an ``optree`` module, an ``optree``
submodule, or a plain constant). Names a module merely imports from elsewhere (``sys``,
``ClassVar``, ``itemgetter``, ...) are implementation details and are ignored. For every name the
description records its kind (module, class, function, constant, ...), its signature where
:func:`inspect.signature` can tell it, and for classes their public members the same way.

An integration module (``optree.integrations.numpy`` ...) whose third-party library is missing on
either side is reported as unavailable rather than compared.

``docs-coverage`` checks the Sphinx docs (``make docs`` runs it on the ``objects.inv`` that the
HTML build writes): every public module found by walking the installed package (so a module
added later is covered without being listed here) must have an entry, and so must every public
name of each; every function and class that optree defines must have a docstring, and so must
every public method or property defined in such a class.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import tempfile
import types
import zlib
from typing import Any

# Attributes every module has or that only reflect how a module was written.
_INCIDENTAL = frozenset({'TYPE_CHECKING', 'annotations'})
_CONSTANT_TYPES = (bool, int, float, str, bytes, tuple, frozenset, type(None))
_BASE_MODULES = (
    'optree',
    'optree.accessors',
    'optree.dataclasses',
    'optree.functools',
    'optree.integrations',
    'optree.ops',
    'optree.pytree',
    'optree.registry',
    'optree.treespec',
    'optree.typing',
    'optree.utils',
    'optree.version',
)
_INTEGRATIONS = ('attrs', 'jax', 'numpy', 'torch')
# The reference's classes are pybind11 types: that base class is how it is built, not its API.
_IMPLEMENTATION_BASES = frozenset({'pybind11_object'})
_ADDRESS = re.compile(r'0x[0-9a-fA-F]+')
# What must have a docstring of its own (constants, type variables and aliases cannot).
_DOCUMENTED_KINDS = (type, types.FunctionType, types.BuiltinFunctionType)
# Properties, Python's or C-level ones (Cython's); not __slots__ fields, which are data.
_PROPERTY_KINDS = (property, types.GetSetDescriptorType)


def _belongs_to_optree(value: Any) -> bool:
    if isinstance(value, types.ModuleType):
        return value.__name__.startswith('optree')
    module = getattr(value, '__module__', None)
    if isinstance(module, str):
        return module == 'optree' or module.startswith('optree.')
    return isinstance(value, _CONSTANT_TYPES)


def _signature(obj: Any) -> str | None:
    try:
        return _ADDRESS.sub('0x?', str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return None


def _kind(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return 'module'
    if isinstance(value, type):
        return 'class'
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        return 'function'
    if isinstance(value, (classmethod, staticmethod)):
        return type(value).__name__
    if isinstance(value, (property, types.GetSetDescriptorType, types.MemberDescriptorType)):
        return 'property'
    if isinstance(value, _CONSTANT_TYPES):
        return 'constant'
    if callable(value):
        return 'callable'
    return 'object'


def _describe_value(value: Any) -> dict[str, Any]:
    kind = _kind(value)
    out: dict[str, Any] = {'kind': kind}
    if kind == 'constant':
        # A set's repr depends on string hashing, which differs between processes.
        out['value'] = repr(sorted(value, key=repr) if isinstance(value, frozenset) else value)
    elif kind in {'function', 'callable'}:
        out['signature'] = _signature(value)
    elif kind == 'module':
        out['name'] = value.__name__
    elif kind == 'class':
        out['signature'] = _signature(value)
        out['mro'] = [
            cls.__name__ for cls in value.__mro__ if cls.__name__ not in _IMPLEMENTATION_BASES
        ]
        members: dict[str, Any] = {}
        for name in dir(value):
            if name.startswith('_') and name not in {'__call__', '__init__', '__new__'}:
                continue
            raw = inspect.getattr_static(value, name, None)
            member: dict[str, Any] = {'kind': _kind(raw)}
            if callable(raw) or isinstance(raw, (classmethod, staticmethod)):
                member['signature'] = _signature(getattr(value, name, None))
            members[name] = member
        out['members'] = members
    return out


def describe_module(name: str) -> dict[str, Any]:
    try:
        module = importlib.import_module(name)
    except ImportError as ex:
        return {'available': False, 'reason': f'{type(ex).__name__}: {ex}'}
    exported = getattr(module, '__all__', None)
    names = set(exported or ())
    attributes = vars(module)
    for attr in dir(module):
        if attr.startswith('_') or attr in _INCIDENTAL:
            continue
        # A name that dir() lists but the module does not hold yet is imported lazily by the
        # module's __getattr__ (optree.integrations): describe it without importing it.
        if attr not in attributes or _belongs_to_optree(attributes[attr]):
            names.add(attr)
    public = {}
    for attr in sorted(names):
        if attr in attributes:
            public[attr] = _describe_value(attributes[attr])
        elif attr in dir(module):
            public[attr] = {'kind': 'lazy'}
        else:
            public[attr] = {'kind': 'missing-but-in-__all__'}
    return {
        'available': True,
        'all': list(exported) if exported is not None else None,
        'names': public,
    }


def describe() -> dict[str, Any]:
    modules = {name: describe_module(name) for name in _BASE_MODULES}
    for name in _INTEGRATIONS:
        modules[f'optree.integrations.{name}'] = describe_module(f'optree.integrations.{name}')
    return modules


def public_modules() -> list[str]:
    """Every public module of the installed package: ``optree`` and each module or package under
    it whose dotted name has no part starting with an underscore (integrations included, whether
    or not their library is installed)."""
    package = importlib.import_module('optree')
    found = {'optree'}
    for module in pkgutil.walk_packages(package.__path__, 'optree.'):
        if not any(part.startswith('_') for part in module.name.split('.')):
            found.add(module.name)
    return sorted(found)


def read_inventory(path: str) -> dict[str, str]:
    """The ``name -> domain:role`` entries of a Sphinx ``objects.inv`` (format version 2)."""
    with open(path, 'rb') as stream:
        header = [stream.readline() for _ in range(4)]
        if not header[0].startswith(b'# Sphinx inventory version 2'):
            raise ValueError(f'{path}: not a Sphinx inventory of version 2: {header[0]!r}')
        body = zlib.decompress(stream.read()).decode()
    entries = {}
    for line in body.splitlines():
        match = re.match(r'(.+?)\s+(\S+:\S+)\s+-?\d+\s', line)
        if match:
            entries.setdefault(match.group(1), match.group(2))
    return entries


def _own_docstring(value: Any) -> bool:
    doc = vars(value).get('__doc__') if isinstance(value, type) else getattr(value, '__doc__', None)
    return isinstance(doc, str) and bool(doc.strip())


def docs_coverage(inventory: dict[str, str]) -> list[str]:
    """What the docs miss: public modules and names without an entry, missing docstrings."""
    problems = []
    for module in public_modules():
        if inventory.get(module) != 'py:module':
            problems.append(f'{module}: no module entry in the docs')
        info = describe_module(module)
        if not info['available']:
            problems.append(f'{module}: cannot be imported to check it ({info["reason"]})')
            continue
        namespace = vars(importlib.import_module(module))
        for name, entry in info['names'].items():
            if entry['kind'] == 'module':
                target = namespace[name].__name__
                if not target.startswith('optree.'):
                    continue  # another library's module, re-exported (attrs.validators, ...)
                if inventory.get(target) != 'py:module':
                    problems.append(f'{module}.{name}: module {target} has no entry in the docs')
                continue
            if f'{module}.{name}' not in inventory:
                problems.append(f'{module}.{name}: no entry in the docs ({entry["kind"]})')
            value = namespace.get(name)
            if not _belongs_to_optree(value) or not isinstance(value, _DOCUMENTED_KINDS):
                continue
            if not _own_docstring(value):
                problems.append(f'{module}.{name}: no docstring')
            if isinstance(value, type):
                for member, raw in vars(value).items():
                    if member.startswith('_'):
                        continue
                    if isinstance(raw, classmethod | staticmethod):
                        raw = raw.__func__
                    if callable(raw) or isinstance(raw, _PROPERTY_KINDS):
                        if not (isinstance(raw.__doc__, str) and raw.__doc__.strip()):
                            problems.append(f'{module}.{name}.{member}: no docstring')
    return sorted(set(problems))


def _diff_entries(where: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    problems = []
    for key in ('kind', 'value', 'signature', 'mro', 'name'):
        if key not in theirs:
            continue
        if theirs[key] is None and key == 'signature':
            continue  # the reference gives no signature (pybind11 builtins): nothing to compare
        if ours.get(key) != theirs[key]:
            problems.append(
                f'{where}: {key} differs: ours {ours.get(key)!r}, 0.20.0 {theirs[key]!r}',
            )
    for member, info in theirs.get('members', {}).items():
        mine = ours.get('members', {}).get(member)
        if mine is None:
            problems.append(f'{where}.{member}: missing')
        else:
            problems.extend(_diff_entries(f'{where}.{member}', mine, info))
    return problems


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return ``(problems, notes)``: API differences and modules that could not be compared."""
    problems: list[str] = []
    notes: list[str] = []
    for module, info in theirs.items():
        mine = ours.get(module, {'available': False, 'reason': 'not described'})
        if not info['available']:
            notes.append(f'{module}: unavailable on the reference ({info["reason"]})')
            continue
        if not mine['available']:
            if module.startswith('optree.integrations.'):
                notes.append(f'{module}: unavailable here ({mine["reason"]})')
            else:
                problems.append(f'{module}: cannot be imported ({mine["reason"]})')
            continue
        if info['all'] != mine['all']:
            problems.append(f'{module}.__all__ differs: ours {mine["all"]}, 0.20.0 {info["all"]}')
        for name, entry in info['names'].items():
            if name not in mine['names']:
                problems.append(f'{module}.{name}: missing ({entry["kind"]})')
            else:
                problems.extend(_diff_entries(f'{module}.{name}', mine['names'][name], entry))
    return problems, notes


def run_describe(python: str) -> dict[str, Any]:
    proc = subprocess.run(
        [python, '-I', __file__, 'describe'],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # never import a source tree by accident
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f'{python} describe failed ({proc.returncode}):\n{proc.stderr}')
    return json.loads(proc.stdout)


def main(argv: list[str]) -> int:
    if argv[:1] == ['describe']:
        json.dump(describe(), sys.stdout, indent=1, sort_keys=True)
        return 0
    if len(argv) == 2 and argv[0] == 'compare':
        problems, notes = compare(run_describe(sys.executable), run_describe(argv[1]))
        for line in notes:
            print(f'note: {line}')
        for line in problems:
            print(line)
        print(f'{len(problems)} difference(s) from optree 0.20.0')
        return 1 if problems else 0
    if len(argv) == 2 and argv[0] == 'docs-coverage':
        problems = docs_coverage(read_inventory(argv[1]))
        for line in problems:
            print(line)
        modules = public_modules()
        print(f'docs coverage: {len(modules)} public modules, {len(problems)} problem(s)')
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
