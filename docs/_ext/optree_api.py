"""The ``optree-api`` directive: the reference section of one public module.

``.. optree-api:: optree.ops`` writes the module's docstring, a summary table and one entry per
public name, in the module's ``__all__`` order and then alphabetically. Which names are public
is decided by ``tools/api_surface.py`` (the same rule the API comparison with optree 0.20.0
uses), so a page never has to list them by hand: a new public module needs only a page with
this directive, and ``tools/api_surface.py docs-coverage`` fails the docs build when some public
name of some public module has no entry.

Every object is described in full once, at its home: the top-level ``optree`` when it exports
the object, otherwise the module that defines it, otherwise the module being documented. Other
modules that export the same object get a short entry that links to its home.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
import api_surface

_AUTODOC = {'function': 'autofunction', 'class': 'autoclass'}
_ALIAS = {'function': 'py:function', 'class': 'py:class'}


def _home(module: str, name: str, value: Any, public: set[str]) -> str | None:
    """``module.name`` of the entry that describes ``value`` in full (None: this one)."""
    optree = importlib.import_module('optree')
    for top_name in getattr(optree, '__all__', ()):
        if getattr(optree, top_name, None) is value:
            here = f'optree.{top_name}'
            return None if here == f'{module}.{name}' else here
    defining = getattr(value, '__module__', None)
    if not isinstance(defining, str) or defining == module or defining not in public:
        return None
    try:
        home = importlib.import_module(defining)
    except ImportError:
        return None
    for home_name in getattr(home, '__all__', None) or dir(home):
        if getattr(home, home_name, None) is value:
            return f'{defining}.{home_name}'
    return None


def render(module: str, *, summary: bool = True) -> list[str]:
    """The reST of one module's reference section."""
    info = api_surface.describe_module(module)
    if not info['available']:
        raise RuntimeError(f'cannot document {module}: {info["reason"]}')
    mod = importlib.import_module(module)
    public = set(api_surface.public_modules())
    order = list(info['all'] or ())
    names = order + sorted(set(info['names']) - set(order))

    lines = [f'.. automodule:: {module}', '']
    entries: list[str] = []
    table: list[str] = []
    submodules: list[str] = []
    for name in names:
        kind = info['names'][name]['kind']
        if kind in {'module', 'lazy'}:
            submodules.append(name)
            continue
        value = getattr(mod, name)
        home = _home(module, name, value, public)
        table.append(name)
        if home is None and not api_surface._belongs_to_optree(value):
            # Another library's object that the module re-exports (dataclasses.Field,
            # attrs.Attribute, ...): named, not described with that library's docstring.
            origin = f'{getattr(value, "__module__", "?")}.{getattr(value, "__qualname__", name)}'
            directive = _ALIAS.get(kind, 'py:data')
            entries += [
                f'.. {directive}:: {name}',
                f'   :module: {module}',
                '',
                f'   ``{origin}``, re-exported as optree 0.20.0 does.',
                '',
            ]
        elif home is None:
            directive = _AUTODOC.get(kind, 'autodata')
            entries += [f'.. {directive}:: {module}.{name}']
            if kind == 'class':
                entries += ['   :members:']
            entries += ['']
        else:
            directive = _ALIAS.get(kind, 'py:data')
            entries += [
                f'.. {directive}:: {name}',
                f'   :module: {module}',
                '',
                f'   The same object as :py:obj:`{home}`, documented there.',
                '',
            ]
    if submodules:
        targets = [
            f'{module}.{name}'
            if info['names'][name]['kind'] == 'lazy'
            else getattr(mod, name).__name__
            for name in submodules
        ]
        links = ', '.join(
            f':py:mod:`{target}`' if target.startswith('optree.') else f'``{target}``'
            for target in targets
        )
        lines += [f'Modules reachable from here: {links}.', '']
    if summary and table:
        lines += ['.. autosummary::', '   :nosignatures:', '']
        lines += [f'   {name}' for name in table]
        lines += ['']
    return lines + entries


class OptreeApi(SphinxDirective):
    required_arguments = 1
    option_spec = {'no-summary': directives.flag}  # noqa: RUF012 (docutils' own convention)

    def run(self):
        module = self.arguments[0]
        text = '\n'.join(render(module, summary='no-summary' not in self.options))
        return self.parse_text_to_nodes(text)


def setup(app):
    app.add_directive('optree-api', OptreeApi)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
