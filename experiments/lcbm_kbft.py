"""LCBM behavior simulation with k-BFT: does training on k masked scenes help predict replays in context?

  python experiments/lcbm_kbft.py --workdir runs/lcbm_kbft --results-md docs/results.md   # full, ~2 h on 2 cores
  python experiments/lcbm_kbft.py --workdir /tmp/kbft_smoke --smoke                      # CI (tests/test_study_kbft.py)
  python experiments/lcbm_kbft.py --workdir runs/lcbm_kbft --dry-run                     # the runs, their configs, what is done

LCBM (PAPERS.md, section 1) trains behavior simulation with every replay masked (BFT), and with k
consecutive replays masked, the others in the prompt (k-BFT, k in {3, 5, 7, 11}); it tests past (the first
5-20% of scenes masked), future (the last 5-20%), random windows (5 or 7) and all masked, and reports the
replay RMSE per video. The embedded corpus is written with long videos (8-16 scenes, `lcbm data generate
--scenes 8-16`, rows of 768 tokens), so k = 3, 5 and 7 mask part of every video; k = 11 masks all of a
video of up to 11 scenes (the longer videos cost 40 tokens a scene, which the CPU budget below does not buy).

Arms (experiments/configs/lcbm_kbft.py: demo.py's model, 768-token rows), trained from scratch per seed
with the same steps, one tokenizer for all (trained on both templates' text):
  bft     behavior_simulation only: every replay, the views and likes-per-view masked (k = 0)
  k3..k11 behavior_simulation mixed 1:1 with k-BFT windows of exactly k masked scenes (`data.kbft_k`), so
          every arm also answers the all-masked task (views, likes-per-view)
  base    the content-only twins of both tasks (same media and steps, captions to write, no behavior);
          one seed. It is the base model of the few-shot baseline.
Test regimes, on the same test videos for every arm (`kbft_window` with a per-video random stream):
past, future, random (5 or 7), all (every replay masked, views and likes in the prompt: `kbft`
regime "all"), and bsim (everything masked: the behavior_simulation task, also scored for views and
likes-per-view R2). Generation is greedy, after the prompt and the answer's first label, `Scene j: {Replay:`
of the first masked scene (`first_label`; the prompt shows which scenes are masked, so it leaks nothing: a
short-trained model otherwise often starts at the wrong scene). A replay the model does not write takes the
per-scene mean for RMSE and counts as wrong for accuracy (the evaluation's rule, docs/contracts.md); the
table shows the share of such scenes ("unwritten") next to every figure.

Metrics: replay RMSE within each video, averaged over videos (LCBM's); RMSE pooled over all masked scenes;
accuracy = share of masked scenes with |error| <= 5; views (log10(1 + views)) and likes-per-view R2 on
bsim. Baselines, fitted on the training split: the mean replay per scene position, uniform random 0-100,
and few-shot in context: the base model prompted with the two shortest training videos' verbalizations
of the same regime with their answers (text only), then the test video.
Statistics (lcbm_jax.study.stats): mean ± std over seeds; 95% intervals of each k-BFT arm minus BFT and
of each arm minus the per-scene mean, seeds then test videos resampled in pairs (`hierarchical_bootstrap`),
the minimal detectable effect next to an interval that holds 0.

Budget (2-core CPU): full mode generates and builds 1,800 + 80 long videos (~1 min), trains 5 arms x 3
seeds + the base for 200 steps each and evaluates 80 test videos x 5 regimes per run. Measured for one k5
run on the shared 2-core box (load ~3): 1.53 s a step, 505 s for the run with a cold compilation cache
(~350 s expected warm), 187 s to evaluate 100 videos; so 16 x (~350 s + ~150 s) = about 2 h 10 min there,
less on an idle box. That run also shows the budget's limit: at 200 steps the k5 model left 30-65% of the
masked scenes of the window regimes unwritten (60-70% without the first label; 1% on bsim), so read the
"unwritten" column before the intervals; more steps (a GPU, or a longer run) is the lever. `--smoke` (CI): 40 videos of 6-8 scenes, the tiny
preset, arms bft and k3 with 1 seed + the base, 6 steps, 4 test videos; it asserts the result's shape
(every arm x seed x regime, every interval): 1.5-2.5 min on the shared box.

Resumable: run the same command again. Finished steps (data, tokenizer, every run's training and
evaluation, the baselines) are reused from WORKDIR/steps/, an interrupted training resumes from its
newest checkpoint, and result.json (no timings) comes out the same. WORKDIR holds study.json, steps/,
corpus/, data/, tokenizer/, runs/ARM/seedS/, jax_cache/, result.json, results.md, lcbm_kbft_rmse.png
and lcbm_kbft_curves.png.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)   # runs from a checkout even before `pip install -e .`
# The project's own imports come after that line (so they resolve in a plain checkout).

from data_pipeline import commands, pipeline, verbalize, vocab, world  # noqa: E402
from data_pipeline import tokenizer as tokenizer_lib  # noqa: E402
from lcbm_jax import artifacts  # noqa: E402
from lcbm_jax.evaluation import behavior  # noqa: E402
from lcbm_jax.evaluation.data import EvalData  # noqa: E402
from lcbm_jax.evaluation.runner import Runner  # noqa: E402
from data_pipeline.codec import Codec  # noqa: E402
from lcbm_jax.study import report, stats  # noqa: E402
from lcbm_jax.study import runner  # noqa: E402
from lcbm_jax.study.runner import Study  # noqa: E402
from lcbm_jax.training import config as config_lib  # noqa: E402
from lcbm_jax.training import train  # noqa: E402

NAME = "lcbm_kbft"
CONFIG = os.path.join(_ROOT, "experiments", "configs", "lcbm_kbft.py")
REGIMES = ("past", "future", "random", "all", "bsim")
REGIME_LABELS = {"past": "past (first 5-20%)", "future": "future (last 5-20%)", "random": "random window (5 or 7)",
                 "all": "all replays (views shown)", "bsim": "all behavior (BFT task)"}
SHOTS = 2               # training videos in the few-shot prompt
RANDOM_SEED = 20261203  # the random-replay baseline's draws (fixed: the table is a function of the runs)
FEWSHOT_SEED = 7        # the shots' verbalization streams
TOL = 5.0               # accuracy: |error| <= 5 replay points
NO_OTHER_SOURCES = {"blift/train": 0, "blift/test": 0, "tweets/train": 0, "tweets/test_time": 0,
                    "tweets/test_brand": 0}

FULL = {
    "mode": "full", "config": "", "scenes": [8, 16],
    "counts": {"cbc/train": 1800, "cbc/test": 80, **NO_OTHER_SOURCES},
    "arms": {"bft": 0, "k3": 3, "k5": 5, "k7": 7, "k11": 11}, "seeds": [0, 1, 2], "base_seeds": [0],
    "steps": 200, "eval_videos": 80,
    "overrides": [],
}
SMOKE = {
    "mode": "smoke", "config": "cpu", "scenes": [6, 8],
    "counts": {"cbc/train": 40, "cbc/test": 4, **NO_OTHER_SOURCES},
    "arms": {"bft": 0, "k3": 3}, "seeds": [0], "base_seeds": [0],
    "steps": 6, "eval_videos": 4,
    # One checkpoint and one held-out loss, at the end; a fixed peak for the MFU log line instead of
    # measuring a matmul (MFU is no result of this study).
    "overrides": ["--config.checkpoint.every_steps=6", "--config.eval.every_steps=0", "--config.eval.batches=1",
                  "--config.log.peak_flops=1e11", "--config.log.every_steps=2"],
}


# ---------------------------------------------------------------------------------------------
# The plan: which runs, with which config overrides.

def _config_spec(spec: dict) -> str:
  return CONFIG + (f":{spec['config']}" if spec["config"] else "")


def runs(spec: dict) -> list[tuple[str, int]]:
  """(arm, seed) of every training run: the arms x seeds, then the base of the few-shot baseline."""
  return [(arm, s) for arm in spec["arms"] for s in spec["seeds"]] + [("base", s) for s in spec["base_seeds"]]


def arm_overrides(root: str, spec: dict, arm: str, seed: int) -> list[str]:
  if arm == "bft":
    tasks = ["--config.data.tasks=behavior_simulation", "--config.data.weights=1.0", "--config.data.kbft_k=0"]
  elif arm == "base":   # both templates' content-only twins; k-BFT windows of k drawn from 3, 5, 7, 11
    tasks = ["--config.data.tasks=behavior_simulation,kbft", "--config.data.weights=(1.0, 1.0)",
             "--config.data.kbft_k=0", "--config.data.content_only=true"]
  else:
    tasks = ["--config.data.tasks=behavior_simulation,kbft", "--config.data.weights=(1.0, 1.0)",
             f"--config.data.kbft_k={spec['arms'][arm]}"]
  return [f"--config.data.dir={os.path.join(root, 'data')}",
          f"--config.data.tokenizer={os.path.join(root, 'tokenizer')}", *tasks,
          f"--config.seed={seed}", f"--config.num_steps={spec['steps']}", *spec["overrides"]]


# ---------------------------------------------------------------------------------------------
# Steps: each returns JSON (no timings) and is kept by the study runner.

def _atomic_dir(path: str, make) -> None:
  """`make(tmp)` fills a temporary directory that becomes `path` only when complete (a kill mid-way
  leaves no half-built `path` for a rerun to trust)."""
  if os.path.isdir(path):
    return
  tmp = path + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  make(tmp)
  os.replace(tmp, path)


def make_data(root: str, spec: dict) -> dict:
  """The long-video corpus (videos only; no instruction rows) and its build under data/."""
  counts = {tuple(k.split("/")): v for k, v in spec["counts"].items()}
  corpus = os.path.join(root, "corpus")
  _atomic_dir(corpus, lambda d: world.generate(d, seed=0, size="small", counts=counts, instructions=False,
                                               scenes=tuple(spec["scenes"]), progress=spec["mode"] == "full"))
  _atomic_dir(os.path.join(root, "data"), lambda d: commands.build_corpus("behavior_world", corpus, d))
  data = os.path.join(root, "data")
  return {split: len(pipeline.Corpus(data, split)) for split in ("train", "test")}


def make_tokenizer(root: str, spec: dict) -> dict:
  """One SentencePiece model for every arm: both templates' verbalizations of every training video."""
  model_cfg = train.model_config(config_lib.load(_config_spec(spec)))
  corpus = pipeline.Corpus(os.path.join(root, "data"), "train")
  out = os.path.join(root, "tokenizer")
  shutil.rmtree(out, ignore_errors=True)
  tok = vocab.train_corpus_tokenizer(corpus, ("behavior_simulation", "kbft"), vocab_size=model_cfg.text.vocab_size,
                                     max_images=model_cfg.max_images, seed=0, max_records=len(corpus), out_dir=out)
  return {"vocab_size": int(tok.vocab_size), "records": len(corpus)}


def train_arm(root: str, spec: dict, study: Study, arm: str, seed: int) -> dict:
  config = config_lib.load(_config_spec(spec), arm_overrides(root, spec, arm, seed))
  return runner.train_run(config, study.workdir(arm, f"seed{seed}"), f"[{NAME}] {arm} seed {seed}")


def _examples(data: EvalData, regime: str) -> list:
  if regime == "bsim":
    return data.examples("test", "behavior_simulation")
  return data.examples("test", "kbft", regime=regime)


def _masked(e, regime: str, text: str) -> tuple[list[int], list[float], list[float]]:
  """(masked scenes, predicted replay (NaN = not written), true replay) of one generation."""
  if regime == "bsim":
    truth = dict(enumerate(e.answer["replay"]))
    got = {i: v for i, v in enumerate(e.verbalized.parse(text)["replay"] or ()) if v is not None}
  else:
    truth = dict(zip(e.answer["scenes"], e.answer["replay"]))
    parsed = e.verbalized.parse(text)
    got = dict(zip(parsed["scenes"], parsed["replay"]))
  pred, true = behavior.align_replays(got, truth)
  return sorted(truth), pred, true


def _score(pred, true, fallback) -> dict:
  """One video's squared-error sum (unwritten scenes take `fallback`), hits |err| <= TOL, counts."""
  pred, true, fallback = (np.asarray(x, np.float64) for x in (pred, true, fallback))
  missing = np.isnan(pred)
  filled = np.where(missing, fallback, pred)
  hits = np.where(missing, False, np.abs(pred - true) <= TOL + 1e-9)
  return {"sse": float(np.sum((filled - true) ** 2)), "hits": int(hits.sum()), "n": int(true.size),
          "unparseable": int(missing.sum())}


def _log_views(x) -> float:
  return float(np.log10(1 + max(float(x), 0.0)))


def make_baselines(root: str, spec: dict) -> dict:
  """Per regime: the test videos, and the per-scene-mean and random baselines' per-video scores; the
  training split's per-position means (the fallback of every model), views and likes-per-view means."""
  config = config_lib.load(_config_spec(spec))
  model_cfg = train.model_config(config)
  data = _eval_data(root, spec, model_cfg, tokenizer_lib.load(os.path.join(root, "tokenizer")))
  train_bsim = data.train_answers("behavior_simulation")
  base = behavior.ReplayBaseline(dict(enumerate(a["replay"])) for a in train_bsim)
  views = [_log_views(a["views"]) for a in train_bsim if a["views"] is not None]
  lpv = [a["likes_per_view"] for a in train_bsim if a["likes_per_view"] is not None]
  out = {"position_mean": {str(k): v for k, v in sorted(base.position_mean.items())}, "global_mean": base.global_mean,
         "views_log10_mean": float(np.mean(views)), "likes_per_view_mean": float(np.mean(lpv)), "regimes": {}}
  for r, regime in enumerate(REGIMES):
    ex = _examples(data, regime)
    rng = np.random.default_rng([RANDOM_SEED, r])
    rows = {"ids": [], "scenes": [], "position_mean": [], "random": []}
    for e in ex:
      scenes, _, true = _masked(e, regime, "")
      pos = base.predict_position(scenes)
      rows["ids"].append(e.record.record_id)
      rows["scenes"].append(scenes)
      rows["position_mean"].append(_score(pos, true, pos))
      rows["random"].append(_score(rng.integers(0, 101, size=len(true)).astype(np.float64), true, pos))
    if regime == "bsim":
      rows["views_true"] = [_log_views(e.verbalized.exact["views"]) for e in ex]
      rows["likes_per_view_true"] = [float(e.verbalized.exact["likes_per_view"]) for e in ex]
    out["regimes"][regime] = rows
  return out


def _eval_data(root: str, spec: dict, model_cfg, tok) -> EvalData:
  return EvalData(os.path.join(root, "data"), Codec(tok, model_cfg.num_image_tokens), model_cfg,
                  spec["eval_videos"], {})


def _shots(data: EvalData, regime: str) -> str:
  """The few-shot prefix: the SHOTS shortest training videos written for `regime` with their answers,
  text only (no keyframes: the test video's own images fill the model's image slots)."""
  train_videos = [r for r in data.train if verbalize.applies(r, "kbft", data.context)]
  order = sorted(range(len(train_videos)), key=lambda i: (len(train_videos[i].content.scenes), i))[:SHOTS]
  texts = []
  for j, i in enumerate(order):
    task, opts = ("behavior_simulation", {}) if regime == "bsim" else ("kbft", {"regime": regime})
    v = verbalize.verbalize(train_videos[i], task, rng=np.random.default_rng([FEWSHOT_SEED, j]), max_images=0,
                            context=data.context, **opts)
    texts.append(v.prompt + v.target + "\n")
  return "".join(texts)


def first_label(e, regime: str) -> str:
  """The start of the answer, `Scene j: {Replay:` of the first masked scene: the prompt shows it (its
  `[MASK]`), so giving it leaks nothing; the readout then measures the values, not whether a short-trained
  model finds where the window starts (it ends before the space, which belongs to the value's piece)."""
  j = 1 if regime == "bsim" else min(e.answer["scenes"]) + 1
  return f"Scene {j}: {{Replay:"


def _max_new_tokens(ex) -> int:
  """Room for the longest reference answer plus slack, a power of two (few compilations; Runner's rule)."""
  need = max(len(e.target_ids) for e in ex) + 8
  return min(256, 1 << max(5, (need - 1).bit_length()))


def evaluate_run(root: str, spec: dict, study: Study, arm: str, seed: int, base: dict) -> dict:
  """Per regime and test video: the model's squared-error sum, hits, masked and unwritten scenes (and for
  bsim the views and likes-per-view it wrote). Greedy generation after the prompt and `first_label`; the
  base model is asked few-shot (the shots before the prompt), every other arm zero-shot."""
  cfg, params, tok = artifacts.load_for_inference(study.workdir(arm, f"seed{seed}"))
  data = _eval_data(root, spec, cfg, tok)
  runner = Runner(cfg, params, data.codec)
  position = {int(k): v for k, v in base["position_mean"].items()}
  out = {}
  for regime in REGIMES:
    ex = _examples(data, regime)
    ids = [e.record.record_id for e in ex]
    assert ids == base["regimes"][regime]["ids"], f"{arm} seed {seed} {regime}: other test videos than the baselines'"
    shots = _shots(data, regime) if arm == "base" else ""
    labels = [first_label(e, regime) for e in ex]
    # Prompt and label encoded as one text, as training encodes prompt and target; </s> dropped.
    prompts = [np.concatenate(data.codec.split(shots + e.verbalized.prompt, label)) for e, label in zip(ex, labels)]
    texts = [label + t for label, t in zip(labels, runner.generate(
        prompts, [e.images for e in ex], _max_new_tokens(ex), f"{arm} seed {seed} {regime}"))]
    rows = []
    for e, text in zip(ex, texts):
      scenes, pred, true = _masked(e, regime, text)
      rows.append(_score(pred, true, [position.get(s, base["global_mean"]) for s in scenes]))
    out[regime] = {"videos": rows}
    if regime == "bsim":
      parsed = [e.verbalized.parse(t) for e, t in zip(ex, texts)]
      out[regime]["views"] = [base["views_log10_mean"] if p["views"] is None else _log_views(p["views"]) for p in parsed]
      out[regime]["likes_per_view"] = [base["likes_per_view_mean"] if p["likes_per_view"] is None
                                       else float(p["likes_per_view"]) for p in parsed]
      out[regime]["scalars_unparseable"] = {"views": sum(p["views"] is None for p in parsed),
                                            "likes_per_view": sum(p["likes_per_view"] is None for p in parsed)}
  return out


# ---------------------------------------------------------------------------------------------
# The result: per-item arrays, seed summaries and intervals.

def RMSE_PER_VIDEO(v: np.ndarray) -> np.ndarray:
  """Mean over videos of each video's own RMSE; fields [sse, n, hits]."""
  return np.sqrt(v[..., 0] / v[..., 1]).mean(-1)


def RMSE_POOLED(v: np.ndarray) -> np.ndarray:
  """RMSE over every masked scene of the videos; fields [sse, n, hits]."""
  return np.sqrt(v[..., 0].sum(-1) / v[..., 1].sum(-1))


def ACCURACY(v: np.ndarray) -> np.ndarray:
  """Share of masked scenes with |error| <= 5; fields [sse, n, hits]."""
  return v[..., 2].sum(-1) / v[..., 1].sum(-1)


def R2(v: np.ndarray) -> np.ndarray:
  """1 - SS_res / SS_tot of field 0 (prediction) against field 1 (truth); NaN where the truth is constant."""
  pred, true = v[..., 0], v[..., 1]
  ss_tot = ((true - true.mean(-1, keepdims=True)) ** 2).sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(ss_tot > 0, 1 - ((pred - true) ** 2).sum(-1) / np.where(ss_tot > 0, ss_tot, 1), np.nan)


METRICS = {"rmse_per_video": RMSE_PER_VIDEO, "rmse_pooled": RMSE_POOLED, "acc": ACCURACY}
SCALARS = {"views_log10_r2": "views", "likes_per_view_r2": "likes_per_view"}


def _replay_array(per_seed: list[list[dict]]) -> np.ndarray:
  """float[S, N, 3] (sse, n, hits) from each seed's per-video scores."""
  return np.array([[[v["sse"], v["n"], v["hits"]] for v in videos] for videos in per_seed], np.float64)


def _intervals(arm: np.ndarray, control: np.ndarray) -> dict:
  return {m: stats.hierarchical_bootstrap(arm, control, fn) for m, fn in METRICS.items()}


def analyse(spec: dict, trained: dict, evals: dict, base: dict, data_counts: dict) -> dict:
  arms, seeds = list(spec["arms"]), spec["seeds"]
  replay = {}
  for regime in REGIMES:
    b = base["regimes"][regime]
    n_items = len(b["ids"])
    pos = _replay_array([b["position_mean"]])
    rand = _replay_array([b["random"]])
    values = {arm: _replay_array([evals[(arm, s)][regime]["videos"] for s in seeds]) for arm in arms}
    few = _replay_array([evals[("base", s)][regime]["videos"] for s in spec["base_seeds"]])
    unparseable = {arm: [sum(v["unparseable"] for v in evals[(arm, s)][regime]["videos"]) for s in seeds]
                   for arm in arms}
    pos_s = np.repeat(pos, len(seeds), axis=0)   # the baseline is the same for every seed: paired per seed
    replay[regime] = {
        "label": REGIME_LABELS[regime], "videos": n_items, "masked_scenes": int(pos[0, :, 1].sum()),
        "arms": {arm: {**{m: stats.seed_summary(fn(values[arm])) for m, fn in METRICS.items()},
                       "unparseable_scenes": unparseable[arm]} for arm in arms},
        "baselines": {"position_mean": {m: float(fn(pos)[0]) for m, fn in METRICS.items()},
                      "random": {m: float(fn(rand)[0]) for m, fn in METRICS.items()},
                      "few_shot": {**{m: stats.seed_summary(fn(few)) for m, fn in METRICS.items()},
                                   "unparseable_scenes": [sum(v["unparseable"] for v in evals[("base", s)][regime]
                                                              ["videos"]) for s in spec["base_seeds"]]}},
        "vs_bft": {arm: _intervals(values[arm], values["bft"]) for arm in arms if arm != "bft"},
        "vs_position_mean": {**{arm: _intervals(values[arm], pos_s) for arm in arms},
                             "few_shot": _intervals(few, np.repeat(pos, len(spec["base_seeds"]), axis=0))},
        # Each arm's own 95% interval (the plot's whiskers).
        "itself": {**{arm: stats.hierarchical_bootstrap(values[arm], None, RMSE_PER_VIDEO) for arm in arms},
                   "position_mean": stats.hierarchical_bootstrap(pos, None, RMSE_PER_VIDEO),
                   "few_shot": stats.hierarchical_bootstrap(few, None, RMSE_PER_VIDEO)},
    }
  b = base["regimes"]["bsim"]
  scalars = {}
  for name, key in SCALARS.items():
    true = np.array(b[f"{key}_true"], np.float64)

    def array(runs_of):
      return np.array([np.stack([np.array(evals[r]["bsim"][key], np.float64), true], -1) for r in runs_of])
    values = {arm: array([(arm, s) for s in seeds]) for arm in arms}
    few = array([("base", s) for s in spec["base_seeds"]])
    train_mean = base["views_log10_mean"] if key == "views" else base["likes_per_view_mean"]
    scalars[name] = {
        "arms": {arm: {"r2": stats.seed_summary(R2(values[arm])),
                       "unparseable": [evals[(arm, s)]["bsim"]["scalars_unparseable"][key] for s in seeds]}
                 for arm in arms},
        "baselines": {"train_mean": float(R2(np.stack([np.full_like(true, train_mean), true], -1))),
                      "few_shot": stats.seed_summary(R2(few))},
        "vs_bft": {arm: stats.hierarchical_bootstrap(values[arm], values["bft"], R2) for arm in arms if arm != "bft"},
    }
  return {"study": NAME, "mode": spec["mode"], "seeds": seeds, "base_seeds": spec["base_seeds"], "arms": arms,
          "k": spec["arms"], "regimes": list(REGIMES), "scenes_per_video": spec["scenes"], "steps": spec["steps"],
          "eval_videos": spec["eval_videos"], "data": data_counts, "shots": SHOTS, "replay": replay,
          "scalars": scalars,
          "seen": {arm: {f"seed{s}": trained[(arm, s)]["seen"] for s in (spec["base_seeds"] if arm == "base" else seeds)}
                   for arm in [*arms, "base"]},
          "eval_loss": {arm: {f"seed{s}": trained[(arm, s)]["eval_loss"]
                              for s in (spec["base_seeds"] if arm == "base" else seeds)} for arm in [*arms, "base"]}}


def check_shape(result: dict) -> None:
  """Every arm x seed x regime present with its summaries, every interval present (the smoke test's claim)."""
  seeds, arms = result["seeds"], result["arms"]
  assert set(result["replay"]) == set(REGIMES), result["replay"].keys()
  for regime, r in result["replay"].items():
    assert r["videos"] >= 1 and r["masked_scenes"] >= r["videos"], (regime, r["videos"])
    for arm in arms:
      for m in METRICS:
        s = r["arms"][arm][m]
        assert len(s["per_seed"]) == len(seeds) and all(math.isfinite(x) for x in s["per_seed"]), (regime, arm, m)
      assert len(r["arms"][arm]["unparseable_scenes"]) == len(seeds)
    assert set(r["vs_bft"]) == set(arms) - {"bft"} and set(r["vs_position_mean"]) == {*arms, "few_shot"}
    for block in (*r["vs_bft"].values(), *r["vs_position_mean"].values()):
      assert set(block) == set(METRICS)
      for boot in block.values():
        assert len(boot["ci95"]) == 2 and boot["seeds"] in (len(seeds), len(result["base_seeds"])), boot
    assert set(r["baselines"]) == {"position_mean", "random", "few_shot"}
  for name in SCALARS:
    assert set(result["scalars"][name]["arms"]) == set(arms)
    assert set(result["scalars"][name]["vs_bft"]) == set(arms) - {"bft"}


# ---------------------------------------------------------------------------------------------
# Rendering.

def _arm_label(result: dict, arm: str) -> str:
  return "BFT (k=0)" if arm == "bft" else f"k-BFT k={result['k'][arm]}"


def render(result: dict) -> str:
  seeds = ", ".join(map(str, result["seeds"]))
  lo, hi = result["scenes_per_video"]
  lines = [f"k-BFT ({result['mode']} mode: {result['data']['train']} training and {result['eval_videos']} test videos "
           f"of {lo}-{hi} scenes, {result['steps']} steps per run, seeds {seeds}). Replay RMSE per video (LCBM's: "
           "within each video, then averaged), pooled over masked scenes, and accuracy |err| <= 5, mean ± std over "
           "seeds; the differences from BFT and from the per-scene mean with their 95% intervals (seeds, then test "
           "videos resampled in pairs) and the minimal detectable effect next to a null. Lower RMSE is better. "
           f"Few-shot: the content-only base model (seed {', '.join(map(str, result['base_seeds']))}) with "
           f"{result['shots']} training videos and their answers in the prompt.", ""]
  header = ["regime", "arm", "RMSE / video", "RMSE pooled", "acc <= 5", "unwritten", "RMSE / video - BFT",
            "RMSE / video - per-scene mean", "acc - BFT"]
  rows = []
  for regime in result["regimes"]:
    r = result["replay"][regime]
    label = f"{r['label']}: {r['videos']} videos, {r['masked_scenes']} scenes"
    for arm in result["arms"]:
      a = r["arms"][arm]
      rows.append([label, _arm_label(result, arm), report.mean_std(a["rmse_per_video"], 2),
                   report.mean_std(a["rmse_pooled"], 2), report.mean_std(a["acc"], 3),
                   f"{np.mean(a['unparseable_scenes']) / r['masked_scenes']:.0%}",
                   "-" if arm == "bft" else report.interval(r["vs_bft"][arm]["rmse_per_video"], 2),
                   report.interval(r["vs_position_mean"][arm]["rmse_per_video"], 2),
                   "-" if arm == "bft" else report.interval(r["vs_bft"][arm]["acc"], 3)])
      label = ""
    b = r["baselines"]
    fs = b["few_shot"]
    rows.append(["", "few-shot (base model)", report.fmt(fs["rmse_per_video"]["mean"], 2),
                 report.fmt(fs["rmse_pooled"]["mean"], 2), report.fmt(fs["acc"]["mean"], 3),
                 f"{np.mean(fs['unparseable_scenes']) / r['masked_scenes']:.0%}", "",
                 report.interval(r["vs_position_mean"]["few_shot"]["rmse_per_video"], 2), ""])
    for name, key in (("per-scene mean (train)", "position_mean"), ("random 0-100", "random")):
      rows.append(["", name, report.fmt(b[key]["rmse_per_video"], 2), report.fmt(b[key]["rmse_pooled"], 2),
                   report.fmt(b[key]["acc"], 3), "", "", "", ""])
  lines.append(report.markdown_table(header, rows))
  lines += ["", "Views and likes-per-view on the all-behavior task (R2; views as log10(1 + views); a value the "
            "model does not write takes the training mean):", ""]
  srows = []
  for name, s in result["scalars"].items():
    for arm in result["arms"]:
      srows.append([name, _arm_label(result, arm), report.mean_std(s["arms"][arm]["r2"], 3),
                    "-" if arm == "bft" else report.interval(s["vs_bft"][arm], 3)])
    srows.append([name, "few-shot (base model)", report.fmt(s["baselines"]["few_shot"]["mean"], 3), ""])
    srows.append([name, "training mean", report.fmt(s["baselines"]["train_mean"], 3), ""])
  lines.append(report.markdown_table(["metric", "arm", "R2", "R2 - BFT"], srows))
  seeds_all = sorted({*result["seeds"], *result["base_seeds"]})
  seen_rows = [[_arm_label(result, arm) if arm != "base" else "base (content only)",
                *(_seen(result["seen"][arm].get(f"seed{s}")) for s in seeds_all)] for arm in result["seen"]]
  lines += ["", "What each run's training saw (input tokens / loss tokens / images):", "",
            report.markdown_table(["arm", *(f"seed {s}" for s in seeds_all)], seen_rows)]
  return "\n".join(lines)


def _seen(seen: dict | None) -> str:
  return "" if seen is None else f"{seen['tokens']:,} / {seen['loss_tokens']:,} / {seen['images']:,}"


def plots(root: str, result: dict, study: Study) -> list[str]:
  names = [*result["arms"], "position_mean", "few_shot"]
  labels = [*(_arm_label(result, a) for a in result["arms"]), "per-scene mean", "few-shot"]
  own = [[result["replay"][g]["itself"][a] for a in names] for g in result["regimes"]]
  bars = report.bar_plot(os.path.join(root, f"{NAME}_rmse.png"), "Replay RMSE per video (95% intervals)",
                         [REGIME_LABELS[g].split(" (")[0] for g in result["regimes"]], labels,
                         [[b["estimate"] for b in row] for row in own], [[b["ci95"][0] for b in row] for row in own],
                         [[b["ci95"][1] for b in row] for row in own], ylabel="RMSE (0-100)")
  curves = report.learning_curves(
      os.path.join(root, f"{NAME}_curves.png"), "Training loss per arm",
      {_arm_label(result, a): [os.path.join(study.workdir(a, f"seed{s}"), "metrics.jsonl") for s in result["seeds"]]
       for a in result["arms"]})
  return [bars, curves]


# ---------------------------------------------------------------------------------------------

def _step_keys(spec: dict) -> list[str]:
  keys = ["data", "tokenizer", "baselines"]
  for arm, seed in runs(spec):
    keys += [f"{arm}/seed{seed}/train", f"{arm}/seed{seed}/eval"]
  return keys


def dry_run(root: str, spec: dict) -> None:
  """Lists every step (done or to run) and each run's config, loaded with its overrides; runs nothing."""
  root = os.path.abspath(root)
  print(f"{NAME} ({spec['mode']}) in {root}: {len(runs(spec))} training runs, {len(REGIMES)} regimes, "
        f"{spec['eval_videos']} test videos")
  for key in _step_keys(spec):
    done = os.path.exists(os.path.join(root, "steps", key + ".json"))
    print(f"  {'done  ' if done else 'to run'} {key}")
  for arm, seed in runs(spec):
    c = config_lib.load(_config_spec(spec), arm_overrides(root, spec, arm, seed))
    print(f"  {arm:5s} seed {seed}: {os.path.join(root, 'runs', arm, f'seed{seed}')}  tasks {','.join(c.data.tasks)} "
          f"weights {c.data.weights} kbft_k {c.data.kbft_k} content_only {c.data.content_only} steps {c.num_steps} "
          f"seq_len {c.data.seq_len} preset {c.model.preset}")


def run(root: str, spec: dict, results_md: str | None) -> dict:
  study = Study(root, NAME, spec)
  root = study.root
  data_counts = study.step("data", lambda: make_data(root, spec))
  study.step("tokenizer", lambda: make_tokenizer(root, spec))
  base = study.step("baselines", lambda: make_baselines(root, spec))
  trained, evals = {}, {}
  for arm, seed in runs(spec):
    trained[(arm, seed)] = study.step(f"{arm}/seed{seed}/train", lambda: train_arm(root, spec, study, arm, seed))
    evals[(arm, seed)] = study.step(f"{arm}/seed{seed}/eval", lambda: evaluate_run(root, spec, study, arm, seed, base))
  result = analyse(spec, trained, evals, base, data_counts)
  markdown = render(result)
  report.write_outputs(root, NAME, result, markdown, results_md)
  files = plots(root, result, study)
  print(markdown)
  print("\nseen per run (input tokens / loss tokens / images):")
  for arm, by_seed in result["seen"].items():
    for s, seen in by_seed.items():
      print(f"  {arm:5s} {s}: {seen['tokens']:,} / {seen['loss_tokens']:,} / {seen['images']:,}")
  print(study.summary())
  print("\n".join(["written:", os.path.join(root, "result.json"), os.path.join(root, "results.md"), *files]
                  + ([f"{results_md} (block {NAME})"] if results_md else [])))
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/lcbm_kbft")
  parser.add_argument("--smoke", action="store_true", help="the CI-sized study (tiny model, 1 seed, about a minute)")
  parser.add_argument("--results-md", default=None, help="also update this file's study block (docs/results.md)")
  parser.add_argument("--dry-run", action="store_true", help="list the runs, their configs and what is done; run nothing")
  args = parser.parse_args(argv)
  spec = SMOKE if args.smoke else FULL
  if args.dry_run:
    dry_run(args.workdir, spec)
    return 0
  result = run(args.workdir, spec, args.results_md)
  if args.smoke:
    check_shape(result)
  return 0


if __name__ == "__main__":
  from lcbm_jax.cli import errors   # importable once the checkout is on sys.path (above)
  # A user-fixable mistake (e.g. a workdir holding another study) is one line and exit 2.
  sys.exit(errors.exit_code(runner.resumable(main), prog=NAME))
