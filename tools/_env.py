"""What the tools read from their environment, shared by the scripts of this directory (which
import it as a sibling: ``python tools/x.py`` puts ``tools/`` first on ``sys.path``)."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """Whether ``CI`` is set to a true value (``1``, ``true``, ``yes``, any case)."""
    return os.environ.get('CI', '').strip().lower() in {'1', 'true', 'yes'}
