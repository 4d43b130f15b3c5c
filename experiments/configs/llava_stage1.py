"""LLaVA stage 1 on behavior data: train the projector only (vision and LLM frozen).

Run (a built BLIFT/behavior data dir; weights from `lcbm import-hf` are a later step):

  lcbm train --config experiments/configs/llava_stage1.py --workdir runs/llava_stage1 \\
      --config.data.dir=DATA_DIR

`llava_stage1.py:cpu` is the small CPU mode (tiny preset, 20 steps, 8 simulated devices fine).
Arg `PRESET` (e.g. `llava_stage1.py:llava-1.5-13b`) picks another model preset.
"""
from lcbm_jax.training import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.model.preset = "llava-1.5-7b" if arg in (None, "cpu") else arg
  c.data.tasks = ("blift", "behavior_simulation", "likes_high_low")
  c.data.weights = (2.0, 1.0, 1.0)
  c.data.seq_len = 2048
  c.data.batch_size = 256
  c.data.workers = 8
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.num_steps = 2000
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 60   # ~3% of the steps
  c.optim.end_lr_ratio = 0.0
  c.optim.weight_decay = 0.0
  c.optim.freeze = ("^vision/", "^llm/")
  c.checkpoint.every_steps = 500
  c.eval.every_steps = 500
  c.eval.batches = 16
  c.log.every_steps = 10
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=20, seq_len=256, warmup_steps=2)
  return c
