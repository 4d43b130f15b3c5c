"""LLaVA-1.5 stage 1: align a fresh projector between a pretrained CLIP and a pretrained Llama on captions.

Only the projector trains (`optim.freeze = ("^vision/", "^llm/")`); the towers come from their own
directories or Hub ids (`init.vision_dir`, `init.llm_dir`), as LLaVA-1.5 starts from CLIP
ViT-L/14-336 and Vicuna-7B v1.5. Hyperparameters are LLaVA-1.5's stage 1: 256 rows a step of 2,048
tokens, lr 1e-3 with 3% warm-up and cosine decay to 0, no weight decay, AdamW betas (0.9, 0.999),
clip 1.0, one epoch (558K captions / 256 = 2,180 steps; packing puts several captions in a row, so
set num_steps, and optim.warmup_steps = 3% of it, to rows / 256 of your data). The data: caption
conversations (task `instruction`, `plain` format: image, then its caption), e.g. LLaVA's
LCS-558K JSON built with `lcbm data build`. Weights are float32 (the Adam steps of stage 2 are below
bfloat16's resolution, and stage 2 starts from this run), computed in bfloat16, full remat.

7B on a Cloud TPU v5p-8 VM (4 chips, one host):

  lcbm train --config experiments/configs/llava_stage1.py --workdir runs/llava_stage1 \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=4 --config.optim.grad_accum=4

7B on one host with 8 GPUs (80 GB each):

  lcbm train --config experiments/configs/llava_stage1.py --workdir runs/llava_stage1 \\
      --config.data.dir=DATA_DIR --config.mesh.fsdp=8 --config.optim.grad_accum=2

The towers default to the Hub ids `openai/clip-vit-large-patch14-336` and `lmsys/vicuna-7b-v1.5`
(fetched into the Hugging Face cache; offline, pass local directories with
`--config.init.vision_dir=CLIP_DIR --config.init.llm_dir=LLAMA_DIR`). `llava_stage1.py:13b` starts
from Vicuna-13B v1.5 instead. Stage 2 (`llava_stage2.py`) continues from this workdir.

`llava_stage1.py:cpu` is the CPU miniature (20 steps of 8 rows, 8 simulated devices fine): it starts
from the tiny CLIP and Llama directories given on the command line (none: random towers of the tiny preset):

  lcbm train --config experiments/configs/llava_stage1.py:cpu --workdir /tmp/stage1 \\
      --config.data.dir=DATA_DIR --config.init.vision_dir=CLIP_DIR --config.init.llm_dir=LLAMA_DIR
"""
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

LLMS = {"7b": ("llava-1.5-7b", "lmsys/vicuna-7b-v1.5"), "13b": ("llava-1.5-13b", "lmsys/vicuna-13b-v1.5")}


def get_config(arg=None):
  if arg not in (None, "cpu", *LLMS):
    raise UserError(f"llava_stage1.py takes no arg, 'cpu' or one of {', '.join(LLMS)}, got {arg!r}")
  preset, llm = LLMS["7b" if arg in (None, "cpu") else arg]
  c = config_lib.llava_recipe(preset, num_steps=2180, batch_size=256, lr=1e-3,
                              freeze=("^vision/", "^llm/"), save_every=500)
  c.init.vision_dir = "openai/clip-vit-large-patch14-336"
  c.init.llm_dir = llm
  c.data.tasks = ("instruction",)
  c.data.weights = (1.0,)
  c.data.conversation = "plain"   # LLaVA's stage-1 template: the image, then the caption
  if arg == "cpu":
    config_lib.cpu_mode(c, num_steps=20, seq_len=256, warmup_steps=2)
  return c
