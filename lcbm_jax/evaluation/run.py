"""`lcbm eval`: run a checkpoint on the held-out splits and print model vs baselines side by side.

  results = evaluate(cfg, params, tokenizer, data_dir, tasks=None, max_examples=100)
  print(format_table(results))

`results[task][metric] = {"model": float, "baselines": {name: float}, "n": int}`. Tasks (a task
name may expand into several rows, e.g. one per k-BFT regime or Twitter test split):

  row                          model call                 metrics (baselines fitted on the TRAIN split)
  behavior_simulation          generate, parse            replay RMSE / acc<=5 (position mean, global mean,
                                                          random 0-100); views, likes/views RMSE, R2, acc
                                                          within 10% (train mean)
  kbft/{past,future,random}    generate, parse            replay RMSE / acc<=5 (same baselines)
  likes_high_low/{time,brand}  generate, parse            accuracy (majority class, random)
  content_simulation_choice    score the option numbers   accuracy (random = 1/options)
  tweet_generation             generate                   BLEU-1..4, ROUGE-L (a training tweet of the account)
  behavior_understanding/*     generate, parse            most replayed scene / comment sentiment accuracy
                                                          (majority)
  blift                        generate, parse            upvotes / liked % RMSE, R2, acc within 10%; replay
                                                          RMSE / acc<=5 (train mean, replay baselines)
  zero_shot_tone               score comment openings     top-1 accuracy vs latent tone (majority, random)
  zero_shot_memorability       score "00".."99"           Spearman vs latent memorability
  optimize_tweets/_videos      rank per account/channel   top-1 hit rate (random pick), Spearman

Generation is greedy and batched (`lcbm_jax.inference.generate`). Option scoring shares one prefill
of the prompt over all options through the model's KV cache (`score_options`), so 25 or 100
candidates cost one prompt forward plus a few tokens each. Unparseable generations are counted per
task (metric `unparseable`) and scored as wrong (see behavior.py).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from data_pipeline import pipeline, verbalize
from data_pipeline.tokenizer import expand_image_tokens
from lcbm_jax import inference
from lcbm_jax.errors import UserError
from lcbm_jax.evaluation import behavior, content, optimize
from lcbm_jax.model import lcbm

DEFAULT_TASKS = ("behavior_simulation", "kbft", "likes_high_low", "content_simulation_choice",
                 "tweet_generation", "behavior_understanding", "blift", "zero_shot_tone",
                 "zero_shot_memorability")
KBFT_REGIMES = ("past", "future", "random")
TWEET_SPLITS = (("time", "test_time"), ("brand", "test_brand"))
# Zero-shot tone probe: Behavior-LLaVA scores label words; our models learned tone only through
# comments, so each tone is verbalised as the opening of a typical comment of that tone.
TONE_VERBALIZERS = {"cheerful": " so happy watching this", "gloomy": " this makes me sad",
                    "angry": " this is so annoying", "peaceful": " so relaxing"}
_ROWS_PER_CALL = 64   # continuation rows sharing one prefill (bounds the tiled KV cache)


# ---------------------------------------------------------------------------------------------
# Model access: batched generation and prefix-shared option scoring.


class Runner:
  """Wraps (cfg, params, tokenizer) with batched, progress-reporting generate and score calls."""

  def __init__(self, cfg, params, tokenizer, batch_size: int = 16):
    self.cfg, self.params, self.tok, self.batch_size = cfg, params, tokenizer, batch_size

  def _image_batch(self, images: Sequence[np.ndarray]):
    if not any(len(x) for x in images):
      return None
    # Always max_images slots (unused ones zero): one compilation for any image count.
    s = self.cfg.vision.image_size
    out = np.zeros((len(images), self.cfg.max_images, s, s, 3), np.float32)
    for i, x in enumerate(images):
      out[i, :len(x)] = x
    return out

  def generate(self, prompts: Sequence[Sequence[int]], images: Sequence[np.ndarray], max_new_tokens: int,
               desc: str) -> list[str]:
    """Greedy continuations as text, batched by prompt length."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    b = self.batch_size
    for start in tqdm(range(0, len(order), b), desc=desc, unit="batch", file=sys.stderr, leave=False):
      idx = order[start:start + b]
      # Batch sizes are powers of two (a short last batch is padded to the next one), so few shapes compile.
      rows = idx + [idx[-1]] * (min(b, 1 << (len(idx) - 1).bit_length()) - len(idx))
      new = inference.generate(self.cfg, self.params, [prompts[i] for i in rows],
                               self._image_batch([images[i] for i in rows]),
                               max_new_tokens=max_new_tokens, eos_id=self.tok.eos_id)
      for i, ids in zip(idx, new):
        # A model whose vocabulary is padded past the tokenizer's can emit ids with no piece.
        out[i] = self.tok.decode([t for t in ids if t < self.tok.vocab_size])
    return out

  def score_options(self, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]],
                    images: Sequence[np.ndarray], desc: str) -> list[np.ndarray]:
    """Summed log p(option | prompt, images) for every option of every prompt: one float64[K_i] each.

    Examples go in groups sharing one call: options are padded to K (a power of two, at most
    _ROWS_PER_CALL; more are split into chunks) and B * K <= _ROWS_PER_CALL rows per call.
    """
    k_max = max((len(o) for o in options), default=0)
    k = min(_ROWS_PER_CALL, 1 << max(0, (k_max - 1).bit_length()))
    b = max(1, _ROWS_PER_CALL // k)
    out = [np.zeros(len(o)) for o in options]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in tqdm(range(0, len(order), b), desc=desc, unit="batch", file=sys.stderr, leave=False):
      idx = order[start:start + b]
      idx = idx + [idx[-1]] * (b - len(idx))
      for lo in range(0, k_max, k):
        chunk = [list(options[i][lo:lo + k]) for i in idx]
        scores = score_options_batch(self.cfg, self.params, [prompts[i] for i in idx], chunk,
                                     self._image_batch([images[i] for i in idx]), k)
        for row, i in enumerate(idx):
          n = len(chunk[row])
          out[i][lo:lo + n] = scores[row, :n]
    return out


def _bucket(n: int, size: int) -> int:
  return max(size, -(-n // size) * size)


@functools.lru_cache(maxsize=8)
def _option_fn(cfg):
  model = lcbm.LCBM(cfg)

  def run(params, ids_BP, seg_BP, pos_BP, images, cont_NC, seg_NC, pos_NC):
    (b, p), (n, c) = ids_BP.shape, cont_NC.shape
    k = n // b
    cache = lcbm.init_cache(cfg, b, p + c)
    logits_BPV, cache = model.apply({"params": params}, ids_BP, images, seg_BP, pos_BP, cache=cache, cache_index=0)
    # The K options of a prompt all continue it: repeat each prompt's cache over its K option rows.
    cache = {"k": jnp.repeat(cache["k"], k, axis=1), "v": jnp.repeat(cache["v"], k, axis=1),
             "segment_ids": jnp.repeat(cache["segment_ids"], k, axis=0)}
    logits_NCV, _ = model.apply({"params": params}, cont_NC, None, seg_NC, pos_NC, cache=cache, cache_index=p)
    first_NV = jnp.repeat(jax.nn.log_softmax(logits_BPV[:, -1]), k, axis=0)
    # log p of option token j comes from the logits after token j-1 (the prompt's last for j = 0).
    logp_NCV = jnp.concatenate([first_NV[:, None], jax.nn.log_softmax(logits_NCV[:, :-1])], axis=1)
    tok_NC = jnp.take_along_axis(logp_NCV, cont_NC[:, :, None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(seg_NC > 0, tok_NC, 0.0), axis=1).reshape(b, k)

  return jax.jit(run)


def score_options_batch(cfg, params, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]],
                        images: np.ndarray | None, k: int) -> np.ndarray:
  """log p(option | prompt, images) from one prefill per prompt: float64[B, k] (unused slots 0).

  Equals `inference.score` of each (prompt, option) pair (tested) at a fraction of the cost.
  prompts: B token-id rows (image tokens expanded); options: per prompt at most k non-empty rows;
  images: float[B, M, H, W, 3] or None.
  """
  if any(len(o) == 0 for opts in options for o in opts) or any(len(opts) > k for opts in options):
    raise ValueError("score_options_batch: every option needs a token, and at most k options per prompt")
  b = len(prompts)
  # Coarse length buckets: one compilation serves many prompt lengths.
  p = _bucket(max(len(r) for r in prompts), 64)
  c = _bucket(max((len(o) for opts in options for o in opts), default=1), 4)
  ids, seg, pos = (np.zeros((b, p), np.int32) for _ in range(3))
  cont, cseg, cpos = (np.zeros((b * k, c), np.int32) for _ in range(3))
  for i, r in enumerate(prompts):
    ids[i, p - len(r):] = r   # left-padded: padding has segment 0 and is never attended
    seg[i, p - len(r):] = 1
    pos[i, p - len(r):] = np.arange(len(r))
    cpos[i * k:(i + 1) * k] = len(r) + np.arange(c)
    for j, o in enumerate(options[i]):
      cont[i * k + j, :len(o)] = o
      cseg[i * k + j, :len(o)] = 1
  img = None if images is None else jnp.asarray(images, jnp.float32)
  return np.asarray(_option_fn(cfg)(params, ids, seg, pos, img, cont, cseg, cpos), np.float64)


# ---------------------------------------------------------------------------------------------
# Data access.


@dataclasses.dataclass
class _Data:
  data_dir: str
  tok: Any
  cfg: Any
  max_examples: int | None
  latent: dict[str, dict]

  def examples(self, split: str, task: str, where=None, **options) -> list[pipeline.EvalExample]:
    """Up to max_examples eval examples of one split for which `where(example)` holds (empty if no
    built corpus has that split)."""
    try:
      pipeline.Corpus(self.data_dir, split)
    except UserError:   # no built corpus has this split (a tweets-only data dir has no "test")
      return []
    out = []
    for e in pipeline.eval_examples(
        self.data_dir, split, task, tokenizer=self.tok, image_size=self.cfg.vision.image_size,
        max_images=self.cfg.max_images, num_image_tokens=self.cfg.num_image_tokens, **options):
      if where is None or where(e):
        out.append(e)
      if self.max_examples is not None and len(out) >= self.max_examples:
        break
    return out

  @functools.cached_property
  def train_corpus(self) -> pipeline.Corpus:
    try:
      return pipeline.Corpus(self.data_dir, "train")
    except UserError as e:
      raise UserError(f"{e}; evaluation fits its baselines on the train split of a built data dir "
                      "(`lcbm data build`)") from None

  @functools.cached_property
  def train(self) -> list:
    """Every training record (baselines are fitted on these only)."""
    return [self.train_corpus[i] for i in range(len(self.train_corpus))]

  @property
  def context(self) -> verbalize.Context:
    return self.train_corpus.context

  def train_answers(self, task: str) -> list:
    """Answers of the training records that take `task`."""
    rng = np.random.default_rng(0)
    return [verbalize.verbalize(r, task, rng=rng, max_images=0, context=self.context).answer
            for r in self.train if verbalize.applies(r, task, self.context)]


def find_latent(data_dir: str) -> str | None:
  """latent.jsonl of the generated corpus: in data_dir, or in a sibling directory of it."""
  here = os.path.abspath(data_dir)
  candidates = [os.path.join(here, "latent.jsonl")]
  parent = os.path.dirname(here)
  if os.path.isdir(parent):
    candidates += [os.path.join(parent, d, "latent.jsonl") for d in sorted(os.listdir(parent))]
  return next((c for c in candidates if os.path.isfile(c)), None)


def load_latent(path: str | None) -> dict[str, dict]:
  if path is None:
    return {}
  out = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        out[row["record_id"]] = row
  return out


# ---------------------------------------------------------------------------------------------
# Tasks. Each returns {row name: {metric: {"model", "baselines", "n"}}}.


def _row(model: float, n: int, **baselines: float) -> dict:
  return {"model": model, "baselines": baselines, "n": n}


def _max_new_tokens(examples, cap: int = 256) -> int:
  # Room for the longest reference answer plus slack (a model that rambles is cut off and parsed),
  # rounded up to a power of two so tasks share compilations.
  need = max(len(e.target_ids) for e in examples) + 8
  return min(cap, 1 << max(5, (need - 1).bit_length()))


def _generate(runner: Runner, examples, desc: str) -> list[str]:
  return runner.generate([e.prompt_ids for e in examples], [e.images for e in examples],
                         _max_new_tokens(examples), desc)


def _replay_rows(pred_by_video, true_by_video, scenes_by_video, base: behavior.ReplayBaseline, rng) -> dict:
  pos_pred = [base.predict_position(s) for s in scenes_by_video]
  m = behavior.replay_metrics(pred_by_video, true_by_video, pos_pred)
  pos = behavior.replay_metrics(pos_pred, true_by_video)
  glob = behavior.replay_metrics([base.predict_global(s) for s in scenes_by_video], true_by_video)
  rand = behavior.replay_metrics(behavior.random_replay_predictions(true_by_video, rng), true_by_video)
  n = m["n"]
  ci = behavior.replay_paired_bootstrap(pred_by_video, pos_pred, true_by_video, rng)
  rows = {
      "replay_rmse": _row(m["rmse"], n, position_mean=pos["rmse"], global_mean=glob["rmse"], random=rand["rmse"]),
      "replay_acc<=5": _row(m["acc_within_5"], n, position_mean=pos["acc_within_5"],
                            global_mean=glob["acc_within_5"], random=rand["acc_within_5"]),
      "replay_unparseable": _row(m["unparseable"], n),
  }
  # 95% interval of (model - per-scene mean), videos resampled: "clearly better" = excludes 0.
  rows["replay_rmse"]["ci95_vs_position_mean"] = ci["rmse"]
  rows["replay_acc<=5"]["ci95_vs_position_mean"] = ci["acc_within_5"]
  return rows


def _scalar_rows(name: str, pred, true, train_values: Iterable, log10: bool = False) -> dict:
  """RMSE / R2 / within-10% rows of one scalar behavior; none if the train split has no values.

  The baseline is the training mean, taken in log10(1 + x) space when the metric is (the mean
  that minimises that RMSE), so counts spanning orders of magnitude get a fair baseline.
  """
  values = [v for v in train_values if v is not None]
  if log10:
    values = [np.log10(1 + max(float(v), 0.0)) for v in values]
  try:
    train_mean = behavior.mean_baseline(values)
  except ValueError:
    return {}
  if log10:
    train_mean = float(10 ** train_mean - 1)
  m = behavior.regression_metrics(pred, true, train_mean, log10=log10)
  b = behavior.regression_metrics([train_mean] * len(true), true, train_mean, log10=log10)
  n = m["n"]
  scale = "_log10" if log10 else ""
  return {
      f"{name}{scale}_rmse": _row(m["rmse"], n, train_mean=b["rmse"]),
      f"{name}{scale}_r2": _row(m["r2"], n, train_mean=b["r2"]),
      f"{name}_acc_within_10%": _row(m["acc_within_10pct"], n, train_mean=b["acc_within_10pct"]),
      f"{name}_unparseable": _row(m["unparseable"], n),
  }


def _replay_baseline(data: _Data) -> behavior.ReplayBaseline:
  videos = [dict(enumerate(a["replay"])) for a in data.train_answers("behavior_simulation")]
  if not videos:
    raise UserError(f"{data.data_dir} has no training videos with replays; replay baselines need the train split")
  return behavior.ReplayBaseline(videos)


def eval_behavior_simulation(runner: Runner, data: _Data, rng) -> dict:
  ex = data.examples("test", "behavior_simulation")
  if not ex:
    return {}
  texts = _generate(runner, ex, "behavior_simulation")
  base = _replay_baseline(data)
  parsed = [behavior.parse_lcbm_target(t) for t in texts]
  preds, trues, scenes = [], [], []
  for p, e in zip(parsed, ex):
    pr, tr = behavior.align_replays(p["replay"], dict(enumerate(e.answer["replay"])))
    preds.append(pr)
    trues.append(tr)
    scenes.append(range(len(tr)))
  rows = _replay_rows(preds, trues, scenes, base, rng)
  train = data.train_answers("behavior_simulation")
  with_views = [(p, e) for p, e in zip(parsed, ex) if e.answer["views"] is not None]
  if with_views:
    rows.update(_scalar_rows("views", [p["views"] for p, _ in with_views], [e.answer["views"] for _, e in with_views],
                             (a["views"] for a in train), log10=True))
  with_lpv = [(p, e) for p, e in zip(parsed, ex) if e.answer["likes_per_view"] is not None]
  if with_lpv:
    rows.update(_scalar_rows("likes_per_view", [p["likes_per_view"] for p, _ in with_lpv],
                             [e.answer["likes_per_view"] for _, e in with_lpv],
                             (a["likes_per_view"] for a in train)))
  out = {"behavior_simulation": rows}
  # Behavior optimization on videos: pick each channel's most replayed video by predicted mean replay.
  pred_mean = [np.nanmean(p) if not np.all(np.isnan(p)) else base.global_mean for p in map(np.asarray, preds)]
  true_mean = [float(np.mean(t)) for t in trues]
  channels = [e.record.communicator.account or e.record.communicator.brand for e in ex]
  opt = optimize.top1_hit_rate(pred_mean, true_mean, channels)
  if opt["groups"]:
    out["optimize_videos"] = {"top1_best_replay": _row(opt["top1_hit"], opt["groups"], random=opt["random"]),
                              "spearman_in_channel": _row(opt["spearman"], opt["groups"])}
  return out


def eval_kbft(runner: Runner, data: _Data, rng) -> dict:
  out = {}
  base = None
  for regime in KBFT_REGIMES:
    ex = data.examples("test", "kbft", regime=regime)
    if not ex:
      continue
    base = base or _replay_baseline(data)
    texts = _generate(runner, ex, f"kbft/{regime}")
    preds, trues, scenes = [], [], []
    for t, e in zip(texts, ex):
      truth = dict(zip(e.answer["scenes"], e.answer["replay"]))
      pr, tr = behavior.align_replays(behavior.parse_lcbm_replays(t), truth)
      preds.append(pr)
      trues.append(tr)
      scenes.append(sorted(truth))
    out[f"kbft/{regime}"] = _replay_rows(preds, trues, scenes, base, rng)
  return out


def eval_likes_high_low(runner: Runner, data: _Data, rng) -> dict:
  out = {}
  majority = None
  for name, split in TWEET_SPLITS:
    ex = data.examples(split, "likes_high_low")
    if not ex:
      continue
    majority = majority or behavior.majority_label(data.train_answers("likes_high_low"))
    texts = _generate(runner, ex, f"likes_high_low/{name}")
    pred = [behavior.parse_like_level(t) for t in texts]
    true = [e.answer for e in ex]
    m = behavior.accuracy(pred, true)
    base = behavior.accuracy([majority] * len(true), true)
    # A uniform guess between two levels is right half the time, whatever the class balance.
    out[f"likes_high_low/{name}"] = {
        "accuracy": _row(m["accuracy"], m["n"], majority=base["accuracy"], random=0.5),
        "unparseable": _row(m["unparseable"], m["n"]),
    }
    if name == "time":
      out["optimize_tweets"] = _optimize_tweets(runner, ex)
  return out


def _continuation(tok, prompt_text: str, label: str) -> list[int]:
  """Ids of `label` as they come after `prompt_text` when the two are encoded together (+ EOS)."""
  ids, flags = tok.encode_segments([prompt_text, label], [False, True])
  n = flags.index(True) if True in flags else len(ids)
  return ids[n:] + [tok.eos_id]


def _optimize_tweets(runner: Runner, ex) -> dict:
  """Rank each account's test tweets by log p("high") - log p("low") of the likes target."""
  tok = runner.tok
  options = [[_continuation(tok, e.verbalized.prompt, f"This tweet has {lvl} likes.") for lvl in ("high", "low")]
             for e in ex]
  scores = runner.score_options([e.prompt_ids for e in ex], options, [e.images for e in ex], "optimize_tweets")
  margin = optimize.high_low_margin([s[0] for s in scores], [s[1] for s in scores])
  likes = [e.record.behavior.likes for e in ex]
  m = optimize.top1_hit_rate(margin, likes, [e.record.communicator.account for e in ex])
  return {"top1_most_liked": _row(m["top1_hit"], m["groups"], random=m["random"]),
          "spearman_in_account": _row(m["spearman"], m["groups"])}


def eval_content_simulation_choice(runner: Runner, data: _Data, rng) -> dict:
  ex = data.examples("test", "content_simulation_choice")
  if not ex:
    return {}
  tok = runner.tok
  options = []
  for e in ex:
    options.append([_continuation(tok, e.verbalized.prompt, str(j))
                    for j in range(1, _num_options(e.verbalized.prompt) + 1)])
  scores = runner.score_options([e.prompt_ids for e in ex], options, [e.images for e in ex],
                                "content_simulation_choice")
  m = content.choice_accuracy(scores, [e.answer - 1 for e in ex])
  return {"content_simulation_choice": {"accuracy": _row(m["accuracy"], m["n"], random=m["random"])}}


def _num_options(prompt: str) -> int:
  """Number of options "1. ...", "2. ..." listed after the question (25, or fewer in a tiny corpus)."""
  listing = "\n" + prompt.rsplit("Which option is", 1)[-1].split("\n", 1)[-1]
  k = 0
  while f"\n{k + 1}. " in listing:
    k += 1
  return k


def eval_tweet_generation(runner: Runner, data: _Data, rng) -> dict:
  ex = data.examples("test_time", "tweet_generation")
  if not ex:
    return {}
  texts = _generate(runner, ex, "tweet_generation")
  refs = [e.answer for e in ex]
  by_account: dict[str, list[str]] = {}
  for r in data.train:
    if r.content.text.strip():
      by_account.setdefault(r.communicator.account, []).append(r.content.text)
  pool = [t for ts in by_account.values() for t in ts] or [""]
  base = [str(rng.choice(by_account.get(e.record.communicator.account, pool))) for e in ex]
  m, b = content.generation_metrics(texts, refs), content.generation_metrics(base, refs)
  return {"tweet_generation": {k: _row(m[k], len(refs), train_tweet_same_account=b[k])
                               for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL")}}


def eval_blift(runner: Runner, data: _Data, rng) -> dict:
  # Posts and videos carry different behavior; take up to max_examples of each.
  ex = (data.examples("test", "blift", where=lambda e: e.answer["replay"] is None)
        + data.examples("test", "blift", where=lambda e: e.answer["replay"] is not None))
  if not ex:
    return {}
  texts = _generate(runner, ex, "blift")
  train = data.train_answers("blift")
  rows = {}
  up = [(t, e) for t, e in zip(texts, ex) if e.answer["likes_percent"] is None and e.answer["upvotes"] is not None]
  if up:
    rows.update(_scalar_rows("upvotes", [behavior.parse_blift_upvotes(t) for t, _ in up],
                             [e.answer["upvotes"] for _, e in up],
                             (a["upvotes"] for a in train if a["likes_percent"] is None), log10=True))
  liked = [(t, e) for t, e in zip(texts, ex) if e.answer["likes_percent"] is not None]
  if liked:
    rows.update(_scalar_rows("liked_percent", [behavior.parse_blift_liked(t) for t, _ in liked],
                             [e.answer["likes_percent"] for _, e in liked],
                             (a["likes_percent"] for a in train)))
  vids = [(t, e) for t, e in zip(texts, ex) if e.answer["replay"] is not None]
  if vids:
    # BLIFT writes replays as decimals 0-1; metrics use LCBM's 0-100 scale so they compare across tasks.
    train_videos = [{i: 100 * v for i, v in enumerate(a["replay"])} for a in train if a["replay"] is not None]
    base = behavior.ReplayBaseline(train_videos) if train_videos else _replay_baseline(data)
    preds, trues, scenes = [], [], []
    for t, e in vids:
      pred = {i: 100 * v for i, v in behavior.parse_blift_replays(t).items()}
      pr, tr = behavior.align_replays(pred, {i: 100 * v for i, v in enumerate(e.answer["replay"])})
      preds.append(pr)
      trues.append(tr)
      scenes.append(range(len(tr)))
    rows.update(_replay_rows(preds, trues, scenes, base, rng))
  return {"blift": rows} if rows else {}


def _blift_probe(runner: Runner, ex, suffix: str) -> tuple[list[list[int]], list[str]]:
  """BLIFT prompt + the true scene description + separator + `suffix`: (expanded ids, prompt text)."""
  tok = runner.tok
  ids, texts = [], []
  for e in ex:
    description = e.verbalized.target.split("\n" + verbalize.BEHAVIOR_SEPARATOR, 1)[0]
    text = e.verbalized.prompt + description + "\n" + verbalize.BEHAVIOR_SEPARATOR + "\n" + suffix
    texts.append(text)
    ids.append(expand_image_tokens([tok.bos_id, *tok.encode(text)], tok.image_id, runner.cfg.num_image_tokens))
  return ids, texts


def _label_continuations(tok, prompt_text: str, labels: Iterable[str]) -> list[list[int]]:
  # No EOS: a label is the start of a longer answer here, not the whole answer.
  return [_continuation(tok, prompt_text, label)[:-1] for label in labels]


def eval_zero_shot_tone(runner: Runner, data: _Data, rng) -> dict:
  ex = data.examples("test", "blift", where=lambda e: "tone" in data.latent.get(e.record.record_id, {}))
  if not ex:
    return {}
  labels = list(TONE_VERBALIZERS)
  ids, texts = _blift_probe(runner, ex, "Top comments: 1.")
  options = [_label_continuations(runner.tok, t, TONE_VERBALIZERS.values()) for t in texts]
  scores = runner.score_options(ids, options, [e.images for e in ex], "zero_shot_tone")
  # Mean log-prob per token: the verbalizers differ in length.
  scores = [s / np.array([len(o) for o in opts]) for s, opts in zip(scores, options)]
  true = [data.latent[e.record.record_id]["tone"] for e in ex]
  m = content.label_accuracy(scores, labels, true)
  train_tones = [data.latent[r.record_id]["tone"] for r in data.train if "tone" in data.latent.get(r.record_id, {})]
  majority = max(set(train_tones), key=train_tones.count) if train_tones else labels[0]
  majority_acc = float(np.mean([t == majority for t in true]))
  return {"zero_shot_tone": {"accuracy": _row(m["accuracy"], m["n"], majority=majority_acc, random=m["random"])}}


def eval_zero_shot_memorability(runner: Runner, data: _Data, rng) -> dict:
  ex = data.examples("test", "blift", where=lambda e: (e.answer["replay"] is not None and "memorability"
                                                       in data.latent.get(e.record.record_id, {})))
  if not ex:
    return {}
  ids, texts = _blift_probe(runner, ex, "Memorability (00-99): ")
  options = [_label_continuations(runner.tok, t, content.MEMORABILITY_LABELS) for t in texts]
  scores = runner.score_options(ids, options, [e.images for e in ex], "zero_shot_memorability")
  m = content.memorability_spearman(scores, [data.latent[e.record.record_id]["memorability"] for e in ex])
  return {"zero_shot_memorability": {"spearman": _row(m["spearman"], m["n"])}}


def eval_behavior_understanding(runner: Runner, data: _Data, rng) -> dict:
  """Most replayed scene (videos) and overall comment sentiment: the label part of the explanation."""
  # The template asks videos with replays about their most replayed scene (answer: its 1-based
  # number) and other items about their comments' sentiment (answer: a word).
  out = {}
  train_all = data.train_answers("behavior_understanding")
  for kind, answer_type, parse in (("replay", int, behavior.parse_scene_number),
                                   ("sentiment", str, behavior.parse_sentiment)):
    ex = data.examples("test", "behavior_understanding", where=lambda e: isinstance(e.answer, answer_type))
    if not ex:
      continue
    texts = _generate(runner, ex, f"behavior_understanding/{kind}")
    pred = [parse(t) for t in texts]
    true = [e.answer for e in ex]
    m = behavior.accuracy(pred, true)
    train = [a for a in train_all if isinstance(a, answer_type)]
    majority = max(set(train), key=lambda a: (train.count(a), str(a))) if train else None
    out[f"behavior_understanding/{kind}"] = {
        "accuracy": _row(m["accuracy"], m["n"], majority=behavior.accuracy([majority] * len(true), true)["accuracy"]),
        "unparseable": _row(m["unparseable"], m["n"]),
    }
  return out


TASK_FNS = {
    "behavior_simulation": eval_behavior_simulation,
    "kbft": eval_kbft,
    "likes_high_low": eval_likes_high_low,
    "content_simulation_choice": eval_content_simulation_choice,
    "tweet_generation": eval_tweet_generation,
    "behavior_understanding": eval_behavior_understanding,
    "blift": eval_blift,
    "zero_shot_tone": eval_zero_shot_tone,
    "zero_shot_memorability": eval_zero_shot_memorability,
}


def evaluate(cfg, params, tokenizer, data_dir: str, tasks: Sequence[str] | None = None,
             max_examples: int | None = 100, *, latent_path: str | None = None, batch_size: int = 16,
             seed: int = 0) -> dict:
  """Every requested task on the held-out splits of `data_dir` (a built data dir, `lcbm data build`).

  Returns {row: {metric: {"model": float, "baselines": {name: float}, "n": int}}}; tasks the data
  does not support produce no rows. `latent_path`: the generated corpus' latent.jsonl (zero-shot
  labels); found next to data_dir when None.
  """
  tasks = list(tasks or DEFAULT_TASKS)
  unknown = [t for t in tasks if t not in TASK_FNS]
  if unknown:
    raise UserError(f"unknown eval task(s) {', '.join(unknown)}; choose from {', '.join(TASK_FNS)}")
  if tokenizer is None:
    raise UserError("the checkpoint has no tokenizer; evaluation needs the one the model was trained with")
  if max_examples is not None and max_examples < 1:
    raise UserError(f"--max-examples must be >= 1, got {max_examples}")
  latent = load_latent(latent_path or find_latent(data_dir))
  data = _Data(data_dir, tokenizer, cfg, max_examples, latent)
  data.train_corpus   # a missing or unbuilt data dir fails here, before any model work
  runner = Runner(cfg, params, tokenizer, batch_size)
  results: dict[str, dict] = {}
  for t in tqdm(tasks, desc="eval", unit="task", file=sys.stderr):
    results.update(TASK_FNS[t](runner, data, np.random.default_rng(seed)))
  return results


# ---------------------------------------------------------------------------------------------
# Output.


def _fmt(x) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  if isinstance(x, int):
    return str(x)
  return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_table(results: dict) -> str:
  """task | metric | model | baseline(s) | n, one line per metric."""
  header = ("task", "metric", "model", "baselines", "n")
  lines = []
  for task, metrics in results.items():
    for metric, r in metrics.items():
      base = "  ".join(f"{k}={_fmt(v)}" for k, v in r["baselines"].items()) or "-"
      lines.append((task, metric, _fmt(r["model"]), base, str(r["n"])))
  widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
  fmt = "  ".join(f"{{:{'>' if i in (2, 4) else '<'}{w}}}" for i, w in enumerate(widths))
  rule = "  ".join("-" * w for w in widths)
  return "\n".join([fmt.format(*header), rule] + [fmt.format(*l) for l in lines])


def _data_dir_from_checkpoint(path: str) -> str:
  """`data.dir` of the training config saved with the checkpoint (a step dir, or a workdir's newest step)."""
  cfg_file = os.path.join(path, "config", "metadata")
  steps_dir = os.path.join(path, "checkpoints")
  if not os.path.isfile(cfg_file) and os.path.isdir(steps_dir):
    steps = sorted((int(d) for d in os.listdir(steps_dir) if d.isdigit()), reverse=True)
    cfg_file = next((f for f in (os.path.join(steps_dir, str(s), "config", "metadata") for s in steps)
                     if os.path.isfile(f)), cfg_file)
  try:
    with open(cfg_file, encoding="utf-8") as f:
      data = json.load(f).get("data") or {}
  except (OSError, ValueError, AttributeError):
    data = {}
  if not isinstance(data, dict) or not data.get("dir"):
    raise UserError(f"{path} does not record a training data dir; pass --data DIR (a built data dir)")
  return data["dir"]


def cli_main(args) -> int:
  """`lcbm eval --checkpoint PATH [--data DIR] [--tasks ...] [--max-examples N] [--json]`."""
  from lcbm_jax import checkpoint
  if not os.path.exists(args.checkpoint):
    raise UserError(f"checkpoint path {args.checkpoint} does not exist; pass a training workdir, "
                    "a step directory or an exported HF directory")
  cfg, params, tok = checkpoint.load_for_inference(args.checkpoint)
  data_dir = args.data or _data_dir_from_checkpoint(args.checkpoint)
  results = evaluate(cfg, params, tok, data_dir, args.tasks or None,
                     100 if args.max_examples is None else args.max_examples)
  if args.json:
    print(json.dumps(results, default=float))
  else:
    print(format_table(results))
  return 0
