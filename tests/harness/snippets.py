"""Source text shared by differential tests: classes that both implementations define alike in
a snippet's setup (see reference.py), so each has one home."""

from __future__ import annotations


def node_class(*, comparable: bool = False) -> str:
    """``Node(*children)``, a plain class to register as a custom node; ``comparable`` adds
    equality and hashing by children."""
    source = """
class Node:
    def __init__(self, *children):
        self.children = children

    def __repr__(self):
        return f'Node{self.children!r}'
"""
    if comparable:
        source += """
    def __eq__(self, other):
        return type(other) is Node and self.children == other.children

    def __hash__(self):
        return hash(self.children)
"""
    return source


NODE_CLASS = node_class()


def registered_node(namespace: str) -> str:
    """``Node`` registered in ``namespace``: its children are its arguments, no metadata."""
    return (
        NODE_CLASS
        + f"""

optree.register_pytree_node(
    Node,
    lambda node: (node.children, None),
    lambda meta, children: Node(*children),
    namespace={namespace!r},
)
"""
    )


def recording_node(namespace: str, event: str) -> str:
    """``Node`` registered in ``namespace`` with no metadata; its unflatten function appends
    ``(event, children)`` to the setup's global list ``events`` before it rebuilds."""
    return (
        NODE_CLASS
        + f"""

def unflatten_node(meta, children):
    events.append(({event!r}, tuple(children)))
    return Node(*children)


optree.register_pytree_node(
    Node, lambda n: (n.children, None), unflatten_node, namespace={namespace!r}
)
"""
    )


# A dict key whose hashing, equality and ordering run Python code; ``__lt__`` records each
# comparison in the setup's global list ``calls``.
KEY_CLASS = """
class Key:
    def __init__(self, name):
        self.name = name

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Key) and self.name == other.name

    def __lt__(self, other):
        calls.append(('lt', self.name, other.name))
        return self.name < other.name

    def __repr__(self):
        return f'Key({self.name!r})'
"""


def define(source: str, module: str, **names: object) -> dict[str, object]:
    """Run ``source`` (one of the above) in a fresh namespace holding ``names``, as if in
    ``module``; returns the namespace, to use the classes in this process."""
    namespace: dict[str, object] = {'__name__': module, **names}
    exec(source, namespace)
    return namespace
