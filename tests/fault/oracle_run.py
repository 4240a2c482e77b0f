"""The oracle as a separate process: ``python oracle_run.py FILE PARTITIONS ENGINE_JSON OUT``.

Runs :func:`streams.replay.replay` over FILE, sharded as the worker shards, and pickles
what the harness compares: alerts (without ``emitted_at``), per-shard states, clocks,
models and counts. A process of its own so that it runs the same code snapshot as the
workers (see conftest.py).
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from pathlib import Path
from typing import Any

EMITTED_AT = re.compile(rb'"emitted_at":"[^"]*"')


def main(path: Path, partitions: int, engine: dict[str, Any], out: Path) -> None:
    from detectors import encode_alert
    from streams.replay import RejectsWriter, make_engine, replay
    from streams.settings import Settings

    settings = Settings(partitions=partitions, engine=engine)
    eng = make_engine(settings.engine_config(), settings.playbook(), partitions)
    alerts: dict[str, bytes] = {}
    repeated: list[str] = []

    def keep(alert: Any) -> None:
        if alert.alert_id in alerts:
            repeated.append(alert.alert_id)
        alerts[alert.alert_id] = EMITTED_AT.sub(b'"emitted_at":""', encode_alert(alert))

    stats = replay(path, eng, keep, rejects=RejectsWriter(None))
    result = {
        "alerts": alerts,
        "repeated": repeated,
        "states": [{k: shard.store.raw(k) for k in shard.store} for shard in eng.shards],
        "clocks": [shard.clock for shard in eng.shards],
        "models": [shard.model.to_bytes() for shard in eng.shards],
        "counts": [dict(shard.counts) for shard in eng.shards],
        "rejected": sum(stats.rejected.values()),
    }
    out.write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4]))
