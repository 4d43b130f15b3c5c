"""LLaVA-1.5 stage 2: instruction tuning of projector + LLM (vision frozen), from stage 1's checkpoint.

`init.checkpoint` is stage 1's workdir (`llava_stage1.py`; its newest verified step, architecture
and tokenizer). Hyperparameters are LLaVA-1.5's stage 2: 128 rows a step of 2,048 tokens, lr 2e-5
with 3% warm-up and cosine decay to 0, no weight decay, AdamW betas (0.9, 0.999), clip 1.0, one
epoch (665K conversations / 128 = 5,197 steps; packing puts several in a row, so set num_steps, and
optim.warmup_steps = 3% of it, to rows / 128 of your data). The data: instruction conversations
(task `instruction`) in LLaVA-1.5's Vicuna v1 format (system line, `USER:` / `ASSISTANT:` turns, loss
on the answers), e.g. LLaVA's 665K mixture built with `lcbm data build`. Weights stay float32: an
Adam step of 2e-5 is below bfloat16's resolution for most weights; compute is bfloat16, full remat.

7B on a Cloud TPU v5p-8 VM (4 chips, one host):

  lcbm train --config experiments/configs/llava_stage2.py --workdir runs/llava_stage2 \\
      --config.init.checkpoint=runs/llava_stage1 --config.data.dir=DATA_DIR \\
      --config.mesh.fsdp=4 --config.optim.grad_accum=2

7B on one host with 8 GPUs (80 GB each):

  lcbm train --config experiments/configs/llava_stage2.py --workdir runs/llava_stage2 \\
      --config.init.checkpoint=runs/llava_stage1 --config.data.dir=DATA_DIR --config.mesh.fsdp=8

`llava_stage2.py:13b` is the same at 13B (start it from `llava_stage1.py:13b`).

`llava_stage2.py:cpu` is the CPU miniature (20 steps of 8 rows, 8 simulated devices fine), from the
stage-1 miniature's workdir:

  lcbm train --config experiments/configs/llava_stage2.py:cpu --workdir /tmp/stage2 \\
      --config.data.dir=DATA_DIR --config.init.checkpoint=/tmp/stage1
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

PRESETS = {"7b": "llava-1.5-7b", "13b": "llava-1.5-13b"}


def get_config(arg=None):
  if arg not in (None, "cpu", *PRESETS):
    raise UserError(f"llava_stage2.py takes no arg, 'cpu' or one of {', '.join(PRESETS)}, got {arg!r}")
  c = config_lib.llava_recipe(PRESETS["7b" if arg in (None, "cpu") else arg], num_steps=5197, batch_size=128, lr=2e-5,
                              freeze=("^vision/",), save_every=500)
  c.init.checkpoint = "runs/llava_stage1"   # stage 1's workdir: override with yours
  c.data.tasks = ("instruction",)
  c.data.weights = (1.0,)
  c.data.conversation = "vicuna_v1"
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=20, seq_len=256, warmup_steps=2)
  return c
