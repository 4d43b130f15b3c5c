"""LLaVA stage 2 on behavior data: train projector + LLM (vision frozen).

Run (a built BLIFT/behavior data dir; weights from `lcbm import-hf` are a later step):

  lcbm train --config experiments/configs/llava_stage2.py --workdir runs/llava_stage2 \\
      --config.data.dir=DATA_DIR

`llava_stage2.py:cpu` is the small CPU mode (tiny preset, 20 steps, 8 simulated devices fine).
Arg `PRESET` (e.g. `llava_stage2.py:llava-1.5-13b`) picks another model preset.
"""
from lcbm_jax.training.config import base_config


def get_config(arg=None):
  c = base_config()
  c.model.preset = "llava-1.5-7b" if arg in (None, "cpu") else arg
  c.data.tasks = ("blift", "behavior_simulation", "likes_high_low")
  c.data.weights = (2.0, 1.0, 1.0)
  c.data.seq_len = 2048
  c.data.batch_size = 128
  c.data.workers = 8
  c.mesh.data = -1
  c.mesh.fsdp = 8
  c.num_steps = 5000
  c.optim.lr = 2e-5
  c.optim.warmup_steps = 150   # ~3% of the steps
  c.optim.end_lr_ratio = 0.0
  c.optim.weight_decay = 0.0
  c.optim.freeze = ("^vision/",)
  c.checkpoint.every_steps = 500
  c.eval.every_steps = 500
  c.eval.batches = 16
  c.log.every_steps = 10
  if arg == "cpu":
    c.model.preset = "tiny"
    c.data.seq_len = 256
    c.data.batch_size = 8
    c.data.workers = 0
    c.mesh.fsdp = 1
    c.num_steps = 20
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 2
    c.checkpoint.every_steps = 10
    c.eval.every_steps = 10
    c.eval.batches = 2
    c.log.every_steps = 5
  return c
