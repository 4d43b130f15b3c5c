"""Does a trained model read the right scene? A teacher-forced probe of behavior-simulation replays.

  python experiments/replay_probe.py --checkpoint runs/demo/train --data runs/demo/data [--examples 150]

Greedy replay RMSE mixes two skills. One is knowing a video's overall level; the other is reading
each scene's own caption. A model with only the first still beats the per-scene mean. This probe
runs the model over each held-out behavior_simulation target (prompt + true target, one forward
pass). At every replay it takes the distribution over the tens digit, then fits, *within* each video
(video fixed effects), the expected tens digit against caption flags (`fast`, `slow`, `bright`),
next to the same fit on the true tens digits. A slope near 0 means the model predicts the same for
every scene of a video. A slope near the true one means it reads the scene.
Results for the main job are in docs/performance.md.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's own imports come after that line, so the probe runs from a plain checkout.
import jax  # noqa: E402

from data_pipeline import pipeline  # noqa: E402
from data_pipeline.codec import Codec  # noqa: E402
from lcbm_jax import artifacts, inference  # noqa: E402
from lcbm_jax.cli import errors  # noqa: E402
from lcbm_jax.errors import UserError  # noqa: E402

FLAGS = {"fast": "moving fast", "slow": "moving slowly", "bright": "bright"}


def within_video_slope(y, x, video) -> float:
  """OLS slope of y on x with one intercept per video (both demeaned inside each video)."""
  y, x, video = (np.asarray(a, np.float64) for a in (y, x, video))
  yd, xd = y.copy(), x.copy()
  for v in np.unique(video):
    m = video == v
    yd[m] -= y[m].mean()
    xd[m] -= x[m].mean()
  denom = float(np.sum(xd * xd))
  return float(np.sum(xd * yd) / denom) if denom > 0 else float("nan")


def probe(checkpoint_path: str, data_dir: str, examples: int) -> dict:
  cfg, params, tok = artifacts.load_for_inference(checkpoint_path)
  codec = Codec(tok, cfg.num_image_tokens)
  ex = list(pipeline.eval_examples(data_dir, "test", "behavior_simulation", codec=codec,
                                   image_size=cfg.vision.image_size, image_mean=cfg.image_mean,
                                   image_std=cfg.image_std, max_images=cfg.max_images, max_examples=examples))
  digits = [codec.text_ids(str(d))[-1] for d in range(10)]
  if [tok.id_to_piece(i) for i in digits] != [str(d) for d in range(10)]:
    raise UserError("this tokenizer does not split digits; the probe needs one id per digit")
  rows = []   # (video, expected tens, true tens, p(true tens), flags...)
  for v, e in enumerate(ex):
    ids = [*e.prompt_ids, *e.target_ids]
    # Always max_images slots (unused ones zero): one compilation for any image count.
    images = np.zeros((1, cfg.max_images, *e.images.shape[1:]), np.float32)
    images[0, :len(e.images)] = e.images
    logits = inference.logits(cfg, params, [ids], images)[0]
    pieces = [tok.id_to_piece(i) for i in ids]
    scene = 0
    for t in range(len(e.prompt_ids) + 2, len(ids) - 1):
      if pieces[t - 2:t + 1] == ["Replay", ":", "▁"] and pieces[t + 1].isdigit():
        p = np.asarray(jax.nn.softmax(logits[t, digits]))
        true = int(pieces[t + 1]) if pieces[t + 2].isdigit() else 0   # one-digit replays have tens 0
        caption = " ".join(e.record.content.scenes[scene].captions)
        rows.append((v, float(p @ np.arange(10)), true, float(p[true]),
                     *(name in caption for name in FLAGS.values())))
        scene += 1
  a = np.asarray(rows, np.float64)
  out = {"videos": len(ex), "replays": len(rows), "mean_p_true_tens": float(a[:, 3].mean())}
  for j, name in enumerate(FLAGS):
    out[f"slope_{name}"] = (within_video_slope(a[:, 1], a[:, 4 + j], a[:, 0]),
                            within_video_slope(a[:, 2], a[:, 4 + j], a[:, 0]))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="training workdir, step dir or exported HF dir")
  parser.add_argument("--data", required=True, help="built data dir (lcbm data build --out)")
  parser.add_argument("--examples", type=int, default=150, help="held-out videos")
  args = parser.parse_args(argv)
  r = probe(args.checkpoint, args.data, args.examples)
  print(f"{r['videos']} videos, {r['replays']} replays; mean p(true tens digit) {r['mean_p_true_tens']:.3f}")
  print(f"{'flag':8s} {'model slope':>12s} {'true slope':>11s}   (expected tens digit, within video)")
  for name in FLAGS:
    model, true = r[f"slope_{name}"]
    print(f"{name:8s} {model:12.3f} {true:11.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(errors.exit_code(main, prog="replay_probe"))   # a bad checkpoint or data path: one line, exit 2
