"""`lcbm predict` / `lcbm score` from the shell on an exported HF directory, checked against
transformers running the same directory (AutoProcessor + LlavaForConditionalGeneration), and the
one-line errors (exit code 2) for bad paths, a wrong number of images and an unreadable image.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hf_helpers as H
from lcbm_jax.export import hf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "USER: <image>\nhow many likes will this get? ASSISTANT:"


def _lcbm(*argv):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
  return subprocess.run([sys.executable, "-m", "lcbm_jax.cli", *argv], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  d = tmp_path_factory.mktemp("cli")
  tok = H.tiny_tokenizer()
  cfg = H.our_config(tok)
  hf.save_llava(str(d / "model"), cfg, H.our_random_params(cfg), tok)
  H.random_image(7, size=(50, 36)).save(d / "img.png")
  (d / "bad.png").write_text("not an image")
  return d, tok


def _hf(d):
  H.torch_setup()
  from transformers import AutoProcessor, LlavaForConditionalGeneration
  return AutoProcessor.from_pretrained(str(d / "model")), LlavaForConditionalGeneration.from_pretrained(str(d / "model")).eval()


def test_predict_matches_transformers(exported):
  import torch
  from PIL import Image
  d, tok = exported
  r = _lcbm("predict", "--checkpoint", str(d / "model"), "--prompt", PROMPT, "--image", str(d / "img.png"),
            "--max-new-tokens", "12", "--json")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout)
  proc, model = _hf(d)
  inputs = proc(images=[Image.open(d / "img.png")], text=PROMPT, return_tensors="pt")
  assert out["prompt_tokens"] == inputs["input_ids"].shape[1]
  with torch.no_grad():
    ids = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_id,
                         pad_token_id=tok.pad_id)[0, inputs["input_ids"].shape[1]:].tolist()
  if tok.eos_id in ids:
    ids = ids[:ids.index(tok.eos_id)]
  # The text is what transformers decodes from the directory's own tokenizer.json (byte-fallback pieces
  # of invalid UTF-8 decode differently in SentencePiece); bos/eos/pad are dropped, role markers kept.
  control = {tok.bos_id, tok.eos_id, tok.pad_id}
  assert out["token_ids"] == ids
  assert out["text"] == proc.tokenizer.decode([i for i in ids if i not in control], skip_special_tokens=False)

  r = _lcbm("predict", "--checkpoint", str(d / "model"), "--prompt", "Views:", "--max-new-tokens", "3")
  assert r.returncode == 0, r.stderr
  assert r.stdout.endswith("\n") and r.stdout.count("\n") <= 3


def test_score_matches_transformers(exported):
  import torch
  from PIL import Image
  d, _ = exported
  cont = " About 12% of views."
  r = _lcbm("score", "--checkpoint", str(d / "model"), "--prompt", PROMPT, "--continuation", cont,
            "--image", str(d / "img.png"), "--json")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout)
  proc, model = _hf(d)
  inputs = proc(images=[Image.open(d / "img.png")], text=PROMPT + cont, return_tensors="pt")
  with torch.no_grad():
    logp = torch.log_softmax(model(**inputs).logits[0].double(), -1).numpy()
  ids = inputs["input_ids"][0].numpy()
  n = out["num_tokens"]
  want = logp[np.arange(len(ids) - n - 1, len(ids) - 1), ids[-n:]]
  np.testing.assert_allclose(out["token_logprobs"], want, atol=1e-4)
  np.testing.assert_allclose(out["logprob"], want.sum(), atol=1e-3)


@pytest.mark.parametrize("case", ["missing_checkpoint", "too_many_images", "unreadable_image", "missing_image"])
def test_errors_are_one_line_exit_2(exported, case):
  d, _ = exported
  model, img = str(d / "model"), str(d / "img.png")
  argv = {
      "missing_checkpoint": ["predict", "--checkpoint", str(d / "nope"), "--prompt", PROMPT, "--image", img],
      "too_many_images": ["predict", "--checkpoint", model, "--prompt", PROMPT, "--image", img, "--image", img],
      "unreadable_image": ["score", "--checkpoint", model, "--prompt", PROMPT, "--continuation", " x",
                           "--image", str(d / "bad.png")],
      "missing_image": ["predict", "--checkpoint", model, "--prompt", PROMPT, "--image", str(d / "none.png")],
  }[case]
  r = _lcbm(*argv)
  assert r.returncode == 2, (r.stdout, r.stderr)
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("lcbm: error: "), r.stderr
