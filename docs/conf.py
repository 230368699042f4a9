"""Sphinx configuration for the optree documentation (``make docs``).

The docs describe the *installed* package: ``make docs`` installs it into ``.venv`` first, and
nothing here puts the source tree on ``sys.path`` (``optree/`` in the work tree has no compiled
``_C`` anyway). ``docs/_ext`` holds the ``optree-api`` directive of the API reference pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optree

sys.path.insert(0, str(Path(__file__).resolve().parent / '_ext'))

project = 'optree'
author = 'optree reimplementation authors'
copyright = 'optree reimplementation authors'
release = optree.__version__
version = release

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.doctest',
    'sphinx.ext.napoleon',
    'myst_parser',
    'optree_api',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build', '_ext']
templates_path: list[str] = []

html_theme = 'furo'
html_title = f'optree {release}'

# API reference: the directive lists the names, autodoc renders them.
autosummary_generate = False
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True

# Doctests (`make docs` runs the doctest builder after the HTML one): every `>>>` block of the
# guides and of the docstrings that autodoc pulls in runs against the installed package.
doctest_global_setup = 'import optree'
doctest_test_doctest_blocks = 'default'

myst_heading_anchors = 3

# A type variable or alias such as ``T`` or ``PyTree`` is public in several modules (optree
# 0.20.0 exports it from each), so every module's page has an entry for it, and a bare ``T`` in
# a signature matches all of them; Sphinx then links the first and warns. That warning, and
# only that one, is category ``ref.python``.
suppress_warnings = ['ref.python']
