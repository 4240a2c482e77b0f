"""``learn = false``: the model scores as it is and learns nothing; quality still moves."""

from __future__ import annotations

import random

from detectors import EngineConfig
from detectors.model import ShardModel
from detectors.profile import FEATURES


def _rows(n: int) -> list[tuple[list[float], float, int]]:
    rng = random.Random(3)
    out = []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in FEATURES]
        out.append((x, rng.gauss(0, 2), int(x[0] > 0)))
    return out


def test_frozen_model_scores_do_not_move_but_quality_does() -> None:
    rows = _rows(800)
    frozen = ShardModel(EngineConfig(learn=False, model_min_labels=0))
    learning = ShardModel(EngineConfig(model_min_labels=0))
    probe = rows[0]
    before = frozen.score(probe[0], probe[1])
    version = frozen.version
    for x, r, y in rows:
        frozen.learn(x, r, y)
        learning.learn(x, r, y)
    assert frozen.score(probe[0], probe[1]) == before
    assert frozen.labels == 0 and frozen.version == version
    assert frozen.metrics()["log_loss"] > 0  # progressive quality still measured
    assert learning.score(probe[0], probe[1]) != before
    assert learning.labels == len(rows)
