"""Evaluation: `run.evaluate` over the task families (behavior_tasks.py, content_tasks.py), reaching the
model through runner.py and the data through data.py; metrics in behavior.py, content.py, optimize.py;
results as table.py's rows."""
