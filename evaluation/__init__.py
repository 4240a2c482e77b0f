"""``churnwatch evaluate``: how well the engine's scores and alerts match ground truth.

Pure computations (:mod:`~evaluation.metrics`, :mod:`~evaluation.baselines`,
:mod:`~evaluation.btyd`, :mod:`~evaluation.alert_quality`, :mod:`~evaluation.evaluate`) and
the shell around them: one replay (:mod:`~evaluation.run`), the PNG
(:mod:`~evaluation.report`) and the terminal tables (:mod:`~evaluation.console`).
"""
