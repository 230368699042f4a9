"""The pytree API under short names (``optree.pytree.flatten`` ...), plus :func:`reexport`.

``reexport(namespace='mylib')`` builds a module whose functions default to ``namespace='mylib'``,
so a library can expose its own pytree API bound to its own registry namespace.
"""

from __future__ import annotations

import builtins as _builtins
import functools as _functools
import inspect as _inspect
import sys as _sys
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING as _TYPE_CHECKING

import optree.dataclasses as dataclasses
import optree.functools as functools
from optree.accessors import PyTreeEntry
from optree.ops import tree_accessors as accessors
from optree.ops import tree_all as all
from optree.ops import tree_any as any
from optree.ops import tree_broadcast_common as broadcast_common
from optree.ops import tree_broadcast_map as broadcast_map
from optree.ops import tree_broadcast_map_with_accessor as broadcast_map_with_accessor
from optree.ops import tree_broadcast_map_with_path as broadcast_map_with_path
from optree.ops import tree_broadcast_prefix as broadcast_prefix
from optree.ops import tree_flatten as flatten
from optree.ops import tree_flatten_one_level as flatten_one_level
from optree.ops import tree_flatten_with_accessor as flatten_with_accessor
from optree.ops import tree_flatten_with_path as flatten_with_path
from optree.ops import tree_is_leaf as is_leaf
from optree.ops import tree_iter as iter
from optree.ops import tree_leaves as leaves
from optree.ops import tree_map as map
from optree.ops import tree_map_ as map_
from optree.ops import tree_map_with_accessor as map_with_accessor
from optree.ops import tree_map_with_accessor_ as map_with_accessor_
from optree.ops import tree_map_with_path as map_with_path
from optree.ops import tree_map_with_path_ as map_with_path_
from optree.ops import tree_max as max
from optree.ops import tree_min as min
from optree.ops import tree_partition as partition
from optree.ops import tree_paths as paths
from optree.ops import tree_reduce as reduce
from optree.ops import tree_replace_nones as replace_nones
from optree.ops import tree_structure as structure
from optree.ops import tree_sum as sum
from optree.ops import tree_transpose as transpose
from optree.ops import tree_transpose_map as transpose_map
from optree.ops import tree_transpose_map_with_accessor as transpose_map_with_accessor
from optree.ops import tree_transpose_map_with_path as transpose_map_with_path
from optree.ops import tree_unflatten as unflatten
from optree.registry import dict_insertion_ordered
from optree.registry import register_pytree_node as register_node
from optree.registry import register_pytree_node_class as register_node_class
from optree.registry import unregister_pytree_node as unregister_node
from optree.typing import PyTreeKind, PyTreeSpec
from optree.utils import _namespace_type_error
from optree.version import __version__

if _TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [  # noqa: RUF022 (same order as optree)
    'reexport',
    'PyTreeSpec',
    'PyTreeKind',
    'PyTreeEntry',
    'flatten',
    'flatten_with_path',
    'flatten_with_accessor',
    'unflatten',
    'iter',
    'leaves',
    'structure',
    'paths',
    'accessors',
    'is_leaf',
    'map',
    'map_',
    'map_with_path',
    'map_with_path_',
    'map_with_accessor',
    'map_with_accessor_',
    'replace_nones',
    'partition',
    'transpose',
    'transpose_map',
    'transpose_map_with_path',
    'transpose_map_with_accessor',
    'broadcast_prefix',
    'broadcast_common',
    'broadcast_map',
    'broadcast_map_with_path',
    'broadcast_map_with_accessor',
    'reduce',
    'sum',
    'max',
    'min',
    'all',
    'any',
    'flatten_one_level',
    'register_node',
    'register_node_class',
    'unregister_node',
    'dict_insertion_ordered',
]


class ReexportedModule(_ModuleType):
    """A module mirroring ``original`` whose functions default to a given namespace."""

    def __init__(
        self,
        /,
        name: str,
        *,
        namespace: str,
        original: _ModuleType,
        doc: str | None = None,
        __all__: Iterable[str] | None = None,
        __dir__: Iterable[str] | None = None,
        extra_members: dict[str, Any] | None = None,
    ) -> None:
        """Create the module ``name`` mirroring ``original`` with default ``namespace``."""
        if not doc:
            doc = (
                f'Re-exports :mod:`{original.__name__}` as :mod:`{name}` '
                f'with namespace :const:`{namespace!r}`.'
            )
        super().__init__(name, doc)
        exported = (
            {n for n in original.__all__ if n != 'reexport'} if __all__ is None else set(__all__)
        )
        if __dir__ is None:
            __dir__ = [n for n in original.__dir__() if not n.startswith('_') and n != 'reexport']
        listed = set(__dir__) & exported
        for key, value in (extra_members or {}).items():
            setattr(self, key, value)
            listed.add(key)
        self._reexport_namespace = namespace
        self._reexport_original = original
        self._reexport_names = frozenset(exported)
        self._reexport_all = sorted(exported)
        self._reexport_dir = sorted(listed)

    @property  # type: ignore[override]
    def __all__(self, /) -> list[str]:
        """The public names of the module."""
        return self._reexport_all

    def __dir__(self, /) -> list[str]:
        """The names listed by :func:`dir`."""
        return list(self._reexport_dir)

    def __getattr__(self, name: str, /) -> Any:
        """Fetch ``name`` from the original module (lazily wrapping functions)."""
        if name in self._reexport_names:
            value = getattr(self._reexport_original, name)
            if _inspect.isfunction(value):
                value = self.__reexport__(value)
            setattr(self, name, value)
            return value
        raise AttributeError(f'module {self.__name__!r} has no attribute {name!r}')

    def __reexport__(self, func: Callable[..., Any], /) -> Callable[..., Any]:
        """Wrap ``func`` so that its ``namespace`` argument defaults to this module's."""
        signature = _inspect.signature(func)
        default_namespace = self._reexport_namespace
        wrapped: Any
        if 'namespace' not in signature.parameters:

            @_functools.wraps(func)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                return func(*args, **kwargs)

        else:

            @_functools.wraps(func)
            def wrapped(*args: Any, namespace: str = default_namespace, **kwargs: Any) -> Any:
                return func(*args, namespace=namespace, **kwargs)

            if func.__doc__:
                wrapped.__doc__ = func.__doc__.replace(
                    "(default: :const:`''`, i.e., the global namespace)",
                    f'(default: :const:`{default_namespace!r}`)',
                )
            wrapped.__signature__ = signature.replace(
                parameters=[
                    param.replace(default=default_namespace) if param.name == 'namespace' else param
                    for param in signature.parameters.values()
                ],
            )

        getter = getattr(func, 'get', None)
        if callable(getter):
            wrapped.get = self.__reexport__(getter)
        return wrapped  # type: ignore[no-any-return]


def _caller_module_name(depth: int, /) -> str:
    try:
        return _sys._getframemodulename(depth + 1) or '__main__'  # type: ignore[attr-defined,no-any-return]
    except AttributeError:  # Python < 3.12
        try:
            return _sys._getframe(depth + 1).f_globals.get('__name__', '__main__')  # type: ignore[no-any-return]
        except (AttributeError, ValueError):
            return '__main__'


def reexport(*, namespace: str, module: str | None = None) -> _ModuleType:
    """Create and register (in :data:`sys.modules`) a pytree module bound to ``namespace``.

    Args:
        namespace: The default namespace of the functions of the new module.
        module: The new module's name (default: ``<caller module>.pytree``). Its submodules
            ``dataclasses`` and ``functools`` are created too.

    Returns:
        The new module.
    """
    from optree import registry

    if namespace is getattr(registry, '__GLOBAL_NAMESPACE'):
        namespace = ''
    elif not isinstance(namespace, str):
        raise _namespace_type_error(namespace)

    if module is None:
        module = f'{_caller_module_name(1)}.pytree'
    if not module or not _builtins.all(part.isidentifier() for part in module.split('.')):
        raise ValueError(f'invalid module name: {module!r}')
    names = (module, f'{module}.dataclasses', f'{module}.functools')
    for name in names:
        if name in _sys.modules:
            raise ValueError(f'module {name!r} already exists')

    sub_dataclasses = ReexportedModule(names[1], namespace=namespace, original=dataclasses)
    sub_functools = ReexportedModule(names[2], namespace=namespace, original=functools)
    mod = ReexportedModule(
        module,
        namespace=namespace,
        original=_sys.modules[__name__],
        extra_members={
            '__version__': __version__,
            'dataclasses': sub_dataclasses,
            'functools': sub_functools,
        },
    )
    _sys.modules[names[0]] = mod
    _sys.modules[names[1]] = sub_dataclasses
    _sys.modules[names[2]] = sub_functools
    return mod
