"""k-BFT on long videos: the CPU model of `demo.py` learns per-scene replays with k consecutive scenes masked.

One arm of the LCBM k-BFT study (`experiments/lcbm_kbft.py` runs them all, with seeds, on a corpus of
long videos: `lcbm data generate --scenes 8-16`, built with `lcbm data build`). The default arm is a
k-BFT arm: behavior simulation (every replay, the views and likes-per-view masked) mixed 1:1 with k-BFT
windows of `data.kbft_k` consecutive masked replays, the other replays in the prompt. The BFT arm is
`--config.data.tasks=behavior_simulation --config.data.weights=1.0`.

  lcbm train --config experiments/configs/lcbm_kbft.py --workdir runs/kbft/k5 \\
      --config.data.dir=runs/kbft/data --config.data.kbft_k=5

Rows are 768 tokens: a 16-scene video with 8 keyframes of 4 image tokens verbalizes to at most 745
(`lcbm data inspect DATA --num-image-tokens 4 --max-images 8 --seq-len 768` shows none too long).

`lcbm_kbft.py:cpu` is the seconds-long variant the study's smoke mode and the tests run (tiny preset,
512-token rows: videos of up to 8 scenes).
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.seed = 0
  # demo.py's model: narrow and deep enough to move replay below the per-scene mean on 2 cores,
  # 32-pixel frames (4 image tokens) so a 16-scene video fits a 768-token row.
  config_lib.demo_model(c)
  c.data.dir = "runs/kbft/data"
  c.data.tasks = ("behavior_simulation", "kbft")
  c.data.weights = (1.0, 1.0)
  c.data.kbft_k = 5
  c.data.seq_len = 768
  c.data.batch_size = 8
  c.mesh.data = -1
  c.num_steps = 300
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 20
  c.optim.end_lr_ratio = 0.05
  c.optim.weight_decay = 0.05
  c.checkpoint.every_steps = 100
  c.checkpoint.keep = 1
  c.eval.every_steps = 100
  c.eval.splits = ("test",)
  c.eval.batches = 2
  c.log.every_steps = 10
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=20, seq_len=512, warmup_steps=3)
    c.data.kbft_k = 3
  elif arg is not None:
    raise UserError(f"lcbm_kbft.py takes no arg or 'cpu', got {arg!r}")
  return c
