"""The free-lunch study's training stages (experiments/free_lunch.py runs them; Behavior-LLaVA, arXiv 2405.00942).

  base       content only: the instruction rows about the corpus's media (captions, simple questions)
             and the text-only world-knowledge rows, from scratch, as a user's LLaVA-1.5 was trained
  behavior   from the base: BLIFT conversations (scene descriptions, then likes, top comments and
             replays) mixed with the instruction rows, as Behavior-LLaVA mixes them 1:1
  control    from the base: the same records and steps with behavior removed (`data.content_only`;
             BLIFT's twin restates the content where the behavior was, at the same expected length)
  finetune   from an arm: the labelled questions (tone, topic, memorability) of a small training set

One stage by hand (the study passes data.dir, data.tokenizer, init.checkpoint and seed for you):

  lcbm train --config experiments/configs/free_lunch.py:base --workdir runs/fl/base \\
      --config.data.dir=DATA --config.data.tokenizer=TOKENIZER_DIR

`free_lunch.py:STAGE,cpu` is the seconds-long variant the study's --smoke mode runs in CI (tiny preset, a
few steps); no arg is the base stage, `cpu` its CPU variant.
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

STAGES = ("base", "behavior", "control", "finetune")
# Full-mode steps per stage on the demo-sized model (0.4-0.8 s a step on 2 cores; experiments/free_lunch.py
# has the whole budget).
# The study sets each fine-tune's steps by its labelled fraction (MODES["full"]["finetune_steps"]).
STEPS = {"base": 600, "behavior": 800, "control": 800, "finetune": 200}


def get_config(arg=None):
  stage, _, mode = (arg or "base").partition(",")
  if stage == "cpu":
    stage, mode = "base", "cpu"
  if stage not in STAGES or mode not in ("", "cpu"):
    raise UserError(f"free_lunch.py takes STAGE or STAGE,cpu with STAGE one of {', '.join(STAGES)}; got {arg!r}")
  c = config_lib.base_config()
  # The demo model of the main job (experiments/configs/demo.py), the smallest the study runs; the
  # later stages start from a checkpoint and take its shapes with its weights.
  config_lib.demo_model(c, shapes=stage == "base")
  c.data.seq_len = 512       # a 7-scene BLIFT video conversation fits
  c.data.batch_size = 8
  c.mesh.data = -1
  c.num_steps = STEPS[stage]
  # At 1e-3 seed 1's behavior arm did not learn replay in 800 steps (RMSE 16.47 against the per-scene
  # mean's 16.32, interval [-0.60, +0.84]); at 3e-3 it did (15.25, [-1.95, -0.24]).
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 20 if stage != "finetune" else 5
  c.optim.end_lr_ratio = 0.05
  c.optim.weight_decay = 0.05
  c.checkpoint.every_steps = 200
  c.checkpoint.keep = 1
  c.eval.every_steps = 0
  c.eval.batches = 2
  c.log.every_steps = 10
  if stage == "base":
    c.data.tasks = ("instruction",)
    c.data.weights = (1.0,)
  elif stage in ("behavior", "control"):
    c.data.tasks = ("blift", "instruction")
    c.data.weights = (1.0, 1.0)
    c.data.mixture = "by_weight"
    c.data.content_only = stage == "control"
  else:
    c.data.tasks = ("instruction",)
    c.data.weights = (1.0,)
    # Label rows are short (one image or video, one question, a one-word answer), so the image budget, not
    # the token budget, limits a batch: at 64 images a step saw ~24 of them (680 of 4096 tokens) and the
    # base fine-tuned on 100% told tone apart at 0.51 held out (warm from cool only); at 256, ~90 rows a
    # step for 15% more time per step, 0.84 (seed 0, 200 steps).
    c.data.images_per_batch = 256
  if mode == "cpu":
    config_lib.tiny_model(c)
    c.num_steps = {"base": 6, "behavior": 4, "control": 4, "finetune": 2}[stage]
    c.data.images_per_batch = 0   # the smoke's label sets fit one batch at the default budget
    c.optim.warmup_steps = 1
    c.checkpoint.every_steps = 1000
    c.eval.batches = 1
    c.log.every_steps = 2
  return c
