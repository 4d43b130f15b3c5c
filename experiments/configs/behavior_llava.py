"""Behavior-LLaVA: fine-tune LLaVA-1.5 on BLIFT behavior (likes, comments, replays) mixed 1:1 with instructions.

As "LLaVA finds free lunch" (arXiv 2405.00942): from a LLaVA-1.5 checkpoint (`init.checkpoint`, by
default the Hub id `llava-hf/llava-1.5-7b-hf`), BLIFT verbalizations (task `blift`) and ordinary
instruction conversations (task `instruction`) 1:1 by weight, in LLaVA-1.5's Vicuna v1 conversation
format, vision frozen (projector and LLM train), lr 2e-5 with 3% warm-up and cosine decay to 0, about
two epochs: BLIFT's ~730K items plus as many instruction rows, twice, at 128 rows a step is ~22,800
steps (packing puts several samples in a row: set num_steps, and optim.warmup_steps = 3% of it, to
2 x rows / 128 of your data). Optimizer details the paper leaves open follow LLaVA-1.5's stage 2
(AdamW betas (0.9, 0.999), no weight decay, clip 1.0, 2,048-token rows). Weights are float32 (an Adam
step of 2e-5 is below bfloat16's resolution for most weights), computed in bfloat16, full remat.
The control arm ("Ad-LLaVA": same media, behavior removed) is `--config.data.content_only=true`.

7B on a Cloud TPU v5p-8 VM (4 chips, one host):

  lcbm train --config experiments/configs/behavior_llava.py --workdir runs/behavior_llava \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=4 --config.optim.grad_accum=2

7B on one host with 8 GPUs (80 GB each):

  lcbm train --config experiments/configs/behavior_llava.py --workdir runs/behavior_llava \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=8

DATA_DIR holds both BLIFT records and instruction conversations (`lcbm data build`). Offline, pass a
local LLaVA directory or an imported checkpoint: `--config.init.checkpoint=DIR`.
`behavior_llava.py:13b` starts from `llava-hf/llava-1.5-13b-hf` instead.

`behavior_llava.py:cpu` is the CPU miniature (20 steps of 8 rows of 512 tokens, which hold a BLIFT video
of the embedded corpus; 8 simulated devices fine), from the tiny LLaVA directory or checkpoint given
on the command line (none: the tiny preset, random):

  lcbm train --config experiments/configs/behavior_llava.py:cpu --workdir /tmp/behavior_llava \\
      --config.data.dir=DATA_DIR --config.init.checkpoint=TINY_LLAVA_DIR
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

CHECKPOINTS = {"7b": ("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf"),
               "13b": ("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf")}


def get_config(arg=None):
  if arg not in (None, "cpu", *CHECKPOINTS):
    raise UserError(f"behavior_llava.py takes no arg, 'cpu' or one of {', '.join(CHECKPOINTS)}, got {arg!r}")
  preset, checkpoint = CHECKPOINTS["7b" if arg in (None, "cpu") else arg]
  c = config_lib.llava_recipe(preset, num_steps=22800, batch_size=128, lr=2e-5,
                              freeze=("^vision/",), save_every=1000)
  c.init.checkpoint = checkpoint
  c.data.tasks = ("blift", "instruction")
  c.data.weights = (1.0, 1.0)
  c.data.mixture = "by_weight"   # 1:1 however many BLIFT and instruction rows the data holds
  c.data.conversation = "vicuna_v1"
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=20, seq_len=512, warmup_steps=2)   # BLIFT videos fit
  return c
