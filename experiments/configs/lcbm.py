"""LCBM: fine-tune a LLaVA-1.5 (Vicuna v1.5) checkpoint on behavior tokens, the tasks of arXiv 2309.00359.

Behavior simulation (per-scene replays, views and likes-per-view; k-BFT windows; tweet likes high or
low), content simulation (the masked scene's ASR among 25 options; a tweet from its media and
likes) and behavior understanding (why a scene is replayed, comment sentiment), with equal weights
(the paper states no mixture), on the Content Behavior Corpus and tweets built with `lcbm data build`.
As in LCBM the vision tower is frozen and the LLM trains (here with the LLaVA projector); from a
LLaVA checkpoint (`init.checkpoint`, by default the Hub id `llava-hf/llava-1.5-7b-hf`), in its Vicuna
v1 conversation format. The optimizer follows LLaVA-1.5's fine-tuning (the paper does not give one):
128 rows of 2,048 tokens a step, lr 2e-5, 3% warm-up, cosine to 0, no weight decay, AdamW betas
(0.9, 0.999), clip 1.0; 2,400 steps is about three passes over CBC's 22.5K training videos in four
video tasks (set num_steps, and optim.warmup_steps = 3% of it, for your data; raise data.seq_len to
4096, Vicuna v1.5's context, if `lcbm data inspect` shows long videos quarantined as too_long).
Weights are float32 (an Adam step of 2e-5 is below bfloat16's resolution for most weights), computed
in bfloat16, full remat. `--config.data.content_only=true` is the control arm (behavior removed).

7B on a Cloud TPU v5p-8 VM (4 chips, one host):

  lcbm train --config experiments/configs/lcbm.py --workdir runs/lcbm \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=4 --config.optim.grad_accum=2

7B on one host with 8 GPUs (80 GB each):

  lcbm train --config experiments/configs/lcbm.py --workdir runs/lcbm \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=8

Offline, pass a local LLaVA directory or an imported checkpoint: `--config.init.checkpoint=DIR`.
`lcbm.py:13b` starts from `llava-hf/llava-1.5-13b-hf` (LCBM's own model is 13B).

`lcbm.py:cpu` is the CPU miniature (30 steps of 8 rows, 8 simulated devices fine; 512-token rows hold
a whole embedded-corpus video), from the tiny LLaVA directory or checkpoint given on the command line
(none: the tiny preset, random):

  lcbm train --config experiments/configs/lcbm.py:cpu --workdir /tmp/lcbm \\
      --config.data.dir=DATA_DIR --config.init.checkpoint=TINY_LLAVA_DIR
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

CHECKPOINTS = {"7b": ("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf"),
               "13b": ("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf")}


def get_config(arg=None):
  if arg not in (None, "cpu", *CHECKPOINTS):
    raise UserError(f"lcbm.py takes no arg, 'cpu' or one of {', '.join(CHECKPOINTS)}, got {arg!r}")
  preset, checkpoint = CHECKPOINTS["7b" if arg in (None, "cpu") else arg]
  c = config_lib.llava_recipe(preset, num_steps=2400, batch_size=128, lr=2e-5,
                              freeze=("^vision/",), save_every=400)
  c.init.checkpoint = checkpoint
  c.data.tasks = ("behavior_simulation", "kbft", "likes_high_low", "content_simulation_choice",
                  "tweet_generation", "behavior_understanding")
  c.data.weights = (1.0,) * len(c.data.tasks)
  c.data.conversation = "vicuna_v1"
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=30, seq_len=512, warmup_steps=3)
  return c
