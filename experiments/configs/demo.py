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
  # The demo preset narrowed to buy steps on 2 cores, with remat (config_lib.demo_model says why).
  config_lib.demo_model(c)
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
  elif arg is not None:
    raise UserError(f"demo.py takes no arg or 'small', got {arg!r}")
  return c
