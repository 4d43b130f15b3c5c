"""Evaluation: behavior/content metrics (behavior.py, content.py), behavior optimization
(optimize.py) and the `lcbm eval` driver that runs a checkpoint against training-split baselines (run.py)."""
