"""``churnwatch`` with an engine that raises for customers whose id starts with ``boom``.

A worker with an engine bug, for the fault tests: run as a script, never imported by the
package. The production code has no such switch.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from detectors.engine import Shard
    from streams.cli import main as cli

    original = Shard.process

    def process(self: Shard, event: Any) -> Any:
        if event.customer_id.startswith("boom"):
            raise RuntimeError(f"engine bug triggered by {event.customer_id}")
        return original(self, event)

    Shard.process = process  # type: ignore[method-assign]
    sys.argv = ["churnwatch", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
