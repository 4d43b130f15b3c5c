"""LLaVA stage 2 on behavior data: train projector + LLM (vision frozen), otherwise as stage 1.

Run (a built BLIFT/behavior data dir; weights from `lcbm import-hf` are a later step):

  lcbm train --config experiments/configs/llava_stage2.py --workdir runs/llava_stage2 \\
      --config.data.dir=DATA_DIR

`llava_stage2.py:cpu` is the small CPU mode (tiny preset, 20 steps, 8 simulated devices fine).
Arg `PRESET` (e.g. `llava_stage2.py:llava-1.5-13b`) picks another model preset.
"""
import os

from lcbm_jax.training import config as config_lib

STAGE1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llava_stage1.py")


def get_config(arg=None):
  c = config_lib.load(STAGE1 + (f":{arg}" if arg else ""))
  c.optim.freeze = ("^vision/",)   # the LLM trains too
  if arg != "cpu":
    c.data.batch_size = 128
    c.mesh.fsdp = 8
    c.num_steps = 5000
    c.optim.lr = 2e-5
    c.optim.warmup_steps = 150   # ~3% of the steps
  return c
