"""Treespec constructors under short names: ``optree.treespec.tuple(...)`` and so on."""

from __future__ import annotations

from optree.ops import treespec_defaultdict as defaultdict
from optree.ops import treespec_deque as deque
from optree.ops import treespec_dict as dict
from optree.ops import treespec_from_collection as from_collection
from optree.ops import treespec_frozendict as frozendict
from optree.ops import treespec_leaf as leaf
from optree.ops import treespec_list as list
from optree.ops import treespec_namedtuple as namedtuple
from optree.ops import treespec_none as none
from optree.ops import treespec_ordereddict as ordereddict
from optree.ops import treespec_structseq as structseq
from optree.ops import treespec_tuple as tuple

__all__ = [  # noqa: RUF022 (same order as optree)
    'leaf',
    'none',
    'tuple',
    'list',
    'dict',
    'namedtuple',
    'ordereddict',
    'defaultdict',
    'deque',
    'structseq',
    'frozendict',
    'from_collection',
]
