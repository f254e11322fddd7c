"""``prog KIND key=value ...`` entry points: the first argument picks a Hydra app, the rest are its overrides."""

from __future__ import annotations

import sys
from collections.abc import Callable


def dispatch(prog: str, kinds: dict[str, Callable[[], None]], usage: str) -> None:
    """Run ``kinds[sys.argv[1]]`` with that argument removed; print usage and exit 2 otherwise."""
    if len(sys.argv) < 2 or sys.argv[1] not in kinds:
        print(f"usage: {prog} {{{','.join(kinds)}}} {usage}", file=sys.stderr)
        sys.exit(2)
    kinds[sys.argv.pop(1)]()
