"""The CPU main job: the `demo` preset learns replay values and like levels in minutes on 2 cores.

Run (after `lcbm data generate --out runs/demo/corpus` and `lcbm data build ... --out runs/demo/data`,
which `experiments/main_job.py` does for you):

  lcbm train --config experiments/configs/demo.py --workdir runs/demo/train --config.data.dir=runs/demo/data

`demo.py:small` is the seconds-long variant the tests run (tiny preset, a handful of steps).
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.seed = 0
  c.model.preset = "demo"
  # Narrower than the preset to buy steps on 2 cores: a 2k vocabulary covers the corpus, 32-pixel
  # frames (4 patches) carry the colour and brightness the audience reacts to.
  c.model.vocab_size = 2048
  c.model.hidden_size = 128
  c.model.intermediate_size = 384
  c.model.num_layers = 6        # depth, more than width, moves replay below the per-scene mean
  c.model.image_size = 32
  # Recompute a layer's activations in the backward pass, keeping only the attention outputs: on 2
  # CPU cores the step is bound by memory traffic, and re-running the cheap matmuls costs less than
  # storing and re-reading every activation (0.80 s a step against 1.04 s without remat).
  c.model.remat = "save_attn_out"
  c.data.dir = "runs/demo/data"
  c.data.tasks = ("behavior_simulation", "likes_high_low")
  # Like levels are learned by step ~300 at any weight; replay needs the rows.
  c.data.weights = (1.0, 0.5)
  c.data.seq_len = 512
  c.data.batch_size = 8
  c.mesh.data = -1
  c.num_steps = 800           # 0.5-0.8 s a step on 2 cores: 7-11 minutes
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 20
  c.optim.end_lr_ratio = 0.05
  c.optim.weight_decay = 0.05
  c.checkpoint.every_steps = 200
  c.eval.every_steps = 200
  c.eval.splits = ("test", "test_time")
  c.eval.batches = 4
  c.log.every_steps = 10
  if arg == "small":
    config_lib.cpu_mode(c, num_steps=30, seq_len=512, warmup_steps=3)   # a whole video verbalization fits
    c.model.vocab_size = c.model.hidden_size = c.model.intermediate_size = c.model.image_size = 0
    c.model.num_layers = 0
  elif arg is not None:
    raise UserError(f"demo.py takes no arg or 'small', got {arg!r}")
  return c
