"""LCBM behavior domain adaptation: train on videos only, test on tweet likes and Reddit upvotes.

  python experiments/domain_adaptation.py --workdir runs/domain_adaptation --results-md docs/results.md
  python experiments/domain_adaptation.py --smoke --workdir /tmp/da_smoke   # CI size (tests/test_study_domain.py)

LCBM trains on YouTube videos and asks whether behavior learned there carries over to another
platform (PAPERS.md, section 4). In the embedded world the audience's rules are shared across sources
(data_pipeline/world/audience.py): hot colours and objects drive a tweet's likes, a post's upvotes and
a video's likes per view. So a video-only model can transfer, and a model without behavior is the floor.

Arms. Every seed trains every arm from scratch, with the demo shapes (experiments/configs/demo.py) and the
same steps; a seed changes the training only (init, data order), the corpus and the tokenizer are
shared. The one tokenizer is trained on the text of every arm's tasks, so an arm can be scored on a
format it never saw.
  video_only   behavior_simulation on the CBC videos (replays, views, likes per view)
  in_domain    likes_high_low on the tweets and blift on the Reddit posts: the test formats themselves
  no_behavior  behavior_simulation's content-only twin on the same videos (same media and steps, the
               captions to write instead of behavior)

Test sets. Every item is read by scoring, never by generation. A video-only model never saw a tweet's or
a post's answer format, so what it generates there is mostly unparseable: that would measure the format,
not the behavior. Scoring gives every arm a graded answer on every item, on the same items and with
the same readout, so arms can be compared item by item.
  tweets_time, tweets_brand  the two tweet test splits: log p("This tweet has high likes.") against
      "... low likes." after the tweet's prompt (`verbalize._likes_high_low` and its `options`). Two
      metrics: the accuracy of the higher-scored option, next to the majority class and chance; and the
      AUC of the margin log p(high) - log p(low). The AUC is threshold-free: a model that never saw the
      format has no reason to know that "high" is the rare level (about 1 tweet in 7), so its accuracy mostly
      measures which way its bias leans.
  reddit  the post's BLIFT prompt, continued by its true scene description and `>>> BEHAVIOR <<<`, then
      "The post will receive N upvotes." scored for N at `upvote_levels` quantiles of the training
      posts' upvotes (written as the template writes them). The scored quantity is the expected
      log10(1 + N) under the softmax of those scores; the metric is its Spearman correlation with the
      true upvotes (chance 0). A rank correlation, because an arm that never saw the format can still
      order posts correctly with its levels shifted.

Statistics (lcbm_jax.study.stats): mean and std over seeds per arm, and 95% intervals of
(video_only - no_behavior), (in_domain - video_only) and of each arm against its baseline, seeds and
then items resampled, paired (`hierarchical_bootstrap`); the minimal detectable effect is shown next to
an interval that holds 0.

Budget. Full mode: the medium corpus (1,800 videos, 1,500 posts, 3,500 tweets), 3 arms x 3 seeds x 600
steps of demo.py. At the main job's 0.5-0.8 s a step on 2 CPU cores that is 45-75 min of training,
plus under a minute of scoring per run and ~3 min for data and tokenizer: about 1.5 h, within 2 h on
the slower box (an estimate from the main job's step time, not a measured end-to-end run).
`--smoke` (CI): a few hundred generated records, the tiny preset (demo.py:small), 1 seed, 10 steps,
32 items per test set, and it asserts the result's shape. It costs about 130 s of CPU, most of it XLA
compiling: the train step twice (the in-domain arm has two tasks, so its step differs), the init and
the scoring programs once (jax_cache/ hands them to the later runs). Measured: 2.5-3 min on the
2-core box shared with other jobs (load 3-5); not measured on two idle cores, where it should come
near the 90 s aim.

Resumable: run the same command again. Finished steps (data, tokenizer, every run's training and
scoring) are reused from WORKDIR/steps/, an interrupted training resumes from its newest checkpoint,
and result.json (no timings) comes out the same. Layout of WORKDIR: study.json and steps/ (the
study runner), corpus/ and data/{videos,social}/ (generated and built), tokenizer/, runs/seedS/ARM/
(checkpoints, metrics.jsonl), jax_cache/ (compiled programs, shared by the runs), result.json,
results.md, domain_adaptation.png and learning_curves.png.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
import scipy.stats

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)   # runs from a checkout even before `pip install -e .`
# The project's own imports come after that line (so they resolve in a plain checkout).

from data_pipeline import commands, pipeline, verbalize, vocab, world  # noqa: E402
from data_pipeline.codec import Codec  # noqa: E402
from lcbm_jax import artifacts  # noqa: E402
from lcbm_jax.evaluation import behavior  # noqa: E402
from lcbm_jax.evaluation.data import EvalData  # noqa: E402
from lcbm_jax.errors import UserError  # noqa: E402
from lcbm_jax.evaluation.runner import Runner  # noqa: E402
from lcbm_jax.study import report, stats  # noqa: E402
from lcbm_jax.study import runner  # noqa: E402
from lcbm_jax.study.runner import Study  # noqa: E402
from lcbm_jax.training import config as config_lib  # noqa: E402
from lcbm_jax.training import train  # noqa: E402

NAME = "domain_adaptation"
# arm -> (data group, tasks, content_only). Data groups: videos = the CBC corpus, social = tweets + posts.
ARMS = {
    "video_only": ("videos", ("behavior_simulation",), False),
    "in_domain": ("social", ("likes_high_low", "blift"), False),
    "no_behavior": ("videos", ("behavior_simulation",), True),
}
ARM_LABELS = {"video_only": "video-only", "in_domain": "in-domain (tweets + posts)",
              "no_behavior": "no behavior (content-only videos)"}
GROUP_SOURCES = {"videos": ("cbc",), "social": ("tweets", "blift")}
# test set -> (split of the social data, metrics); a metric is (name, statistic, fields of the per-item values).
TWEET_TESTS = (("tweets_time", "test_time"), ("tweets_brand", "test_brand"))
TEST_LABELS = {"tweets_time": "tweets, time split", "tweets_brand": "tweets, brand split", "reddit": "Reddit upvotes"}
LEVELS = ("high", "low")   # the order of the two tweet options scored


def AUC(v: np.ndarray) -> np.ndarray:
  """Area under the ROC curve of field 0 (score) for field 1 (1 = positive, 0 = negative), ties counted
  half (the Mann-Whitney U over n_pos * n_neg), vectorised over leading axes; NaN where a class is absent."""
  score, label = v[..., 0], v[..., 1]
  ranks = scipy.stats.rankdata(score, axis=-1)
  n_pos = label.sum(-1)
  n_neg = label.shape[-1] - n_pos
  with np.errstate(invalid="ignore", divide="ignore"):
    auc = ((ranks * label).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
  return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


# metric -> (statistic, fields of the per-item values it reads, chance level)
METRICS = {
    "accuracy": (stats.MEAN, [0], 0.5),      # tweets: [hit, margin, is_high]
    "auc": (AUC, [1, 2], 0.5),
    "spearman": (stats.SPEARMAN, [0, 1], 0.0),   # reddit: [expected log10(1 + upvotes), true upvotes]
}
TEST_METRICS = {"tweets_time": ("accuracy", "auc"), "tweets_brand": ("accuracy", "auc"), "reddit": ("spearman",)}
COLUMNS = [(t, m) for t, ms in TEST_METRICS.items() for m in ms]
METRIC_LABELS = {"accuracy": "accuracy", "auc": "AUC", "spearman": "Spearman"}

SMOKE = {
    "mode": "smoke", "config": "demo.py:small", "size": "small",
    # A few hundred records: enough tweets of both levels in 32 test items, seconds to generate and build.
    "counts": {"cbc/train": 48, "cbc/test": 8, "blift/train": 80, "blift/test": 32, "tweets/train": 200,
               "tweets/test_time": 48, "tweets/test_brand": 48},
    "seeds": [0], "steps": 10, "eval_items": 32, "upvote_levels": 8,
    # One checkpoint and one held-out loss, at the end; a fixed peak for the MFU log line instead of
    # measuring a matmul (MFU is no result of this study).
    "overrides": ["--config.checkpoint.every_steps=10", "--config.eval.every_steps=0", "--config.eval.batches=1",
                  "--config.log.peak_flops=1e11", "--config.log.every_steps=5"],
}
FULL = {
    "mode": "full", "config": "demo.py", "size": "medium", "counts": {},
    "seeds": [0, 1, 2], "steps": 600, "eval_items": 400, "upvote_levels": 8,
    # A checkpoint and a held-out loss every 200 steps (demo.py), the learning curves' points.
    "overrides": [],
}


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
  """Generates the embedded corpus and builds it into data/videos (cbc) and data/social (tweets, blift)."""
  corpus = os.path.join(root, "corpus")
  counts = {tuple(k.split("/")): v for k, v in spec["counts"].items()} or None
  # The tasks here read no instruction conversations, so the corpus is written without them.
  _atomic_dir(corpus, lambda d: world.generate(d, seed=0, size=spec["size"], counts=counts, instructions=False))
  out = {}
  for group, sources in GROUP_SOURCES.items():
    def build(d, sources=sources):
      for source in sources:
        commands.build_corpus(source, os.path.join(corpus, source), d)
    _atomic_dir(os.path.join(root, "data", group), build)
    out[group] = {}
    for split in ("train", "test", "test_time", "test_brand"):
      try:
        out[group][split] = len(pipeline.Corpus(os.path.join(root, "data", group), split))
      except UserError:   # a group without that split
        continue
  return out


def make_tokenizer(root: str, spec: dict) -> dict:
  """One SentencePiece model for every arm: the verbalizations of all arms' tasks on both data groups."""
  config = config_lib.load(_config_path(spec))
  model_cfg = train.model_config(config)
  corpus = pipeline.Corpus(os.path.join(root, "data"), "train")   # data/ holds both groups' datasets
  tasks = tuple(dict.fromkeys(t for _, ts, _ in ARMS.values() for t in ts))
  tok = vocab.train_corpus_tokenizer(corpus, tasks, vocab_size=model_cfg.text.vocab_size,
                                     max_images=model_cfg.max_images, seed=0, max_records=len(corpus),
                                     out_dir=os.path.join(root, "tokenizer"))
  return {"vocab_size": int(tok.vocab_size), "records": len(corpus), "tasks": list(tasks)}


def _config_path(spec: dict) -> str:
  name, _, arg = spec["config"].partition(":")
  return os.path.join(_ROOT, "experiments", "configs", name) + (f":{arg}" if arg else "")


def arm_overrides(root: str, spec: dict, arm: str, seed: int) -> list[str]:
  group, tasks, content_only = ARMS[arm]
  return [f"--config.data.dir={os.path.join(root, 'data', group)}",
          f"--config.data.tokenizer={os.path.join(root, 'tokenizer')}",
          f"--config.data.tasks={','.join(tasks)}",
          f"--config.data.weights={tuple(1.0 for _ in tasks)!r}",
          f"--config.data.content_only={str(content_only).lower()}",
          # Held-out loss on what the arm trains on: video test set, or the posts' test and the tweets' time split.
          f"--config.eval.splits={'test' if group == 'videos' else 'test,test_time'}",
          f"--config.seed={seed}", f"--config.num_steps={spec['steps']}", *spec["overrides"]]


def train_arm(root: str, spec: dict, study: Study, arm: str, seed: int) -> dict:
  config = config_lib.load(_config_path(spec), arm_overrides(root, spec, arm, seed))
  return runner.train_run(config, study.workdir(f"seed{seed}", arm), f"seed{seed}/{arm}")


def _is_post(e) -> bool:
  return e.verbalized.exact["upvotes"] is not None and e.verbalized.exact["likes_percent"] is None


def make_baselines(root: str, spec: dict) -> dict:
  """What the baselines and the Reddit readout need from the training split (no model)."""
  data = EvalData(os.path.join(root, "data", "social"), None, None, None, {})   # train_answers reads no codec
  majority = behavior.majority_label(data.train_answers("likes_high_low"))
  ups = [a["upvotes"] for a in data.train_answers("blift") if a["likes_percent"] is None and a["upvotes"] is not None]
  k = spec["upvote_levels"]
  words = list(dict.fromkeys(verbalize.views_in_words(q) for q in np.quantile(ups, (np.arange(k) + 0.5) / k)))
  return {"majority_label": majority,
          "upvote_levels": [{"words": w, "value": verbalize.read_count(w)} for w in words]}


def evaluate_arm(root: str, spec: dict, study: Study, arm: str, seed: int, base: dict) -> dict:
  """Per-item values of one run on every test set: tweets [hit, margin, is_high], reddit [pred, true]."""
  cfg, params, tok = artifacts.load_for_inference(study.workdir(f"seed{seed}", arm))
  codec = Codec(tok, cfg.num_image_tokens)
  data = EvalData(os.path.join(root, "data", "social"), codec, cfg, spec["eval_items"], {})
  runner = Runner(cfg, params, codec)
  out = {}
  for name, split in TWEET_TESTS:
    ex = data.examples(split, "likes_high_low")
    options = [[codec.continuation(e.verbalized.prompt, dict(e.verbalized.options)[lvl], eos=True) for lvl in LEVELS]
               for e in ex]
    scores = runner.score_options([e.prompt_ids for e in ex], options, [e.images for e in ex], f"{arm}/{name}")
    values = []
    for e, s in zip(ex, scores):
      margin = float(s[0] - s[1])
      values.append([float(("high" if margin > 0 else "low") == e.answer), margin, float(e.answer == "high")])
    out[name] = {"ids": [e.record.record_id for e in ex], "values": values}
  ex = data.examples("test", "blift", where=_is_post)
  levels = base["upvote_levels"]
  log_levels = np.log10(1 + np.array([lv["value"] for lv in levels]))
  prompts = [verbalize.blift_behavior_prompt(e.verbalized, "") for e in ex]
  options = [[codec.continuation(p, f"The post will receive {lv['words']} upvotes.", eos=False) for lv in levels]
             for p in prompts]
  scores = runner.score_options([codec.prompt_ids(p) for p in prompts], options, [e.images for e in ex],
                                f"{arm}/reddit")
  values = []
  for e, s in zip(ex, scores):
    p = np.exp(s - s.max())
    values.append([float(p @ log_levels / p.sum()), float(e.verbalized.exact["upvotes"])])
  out["reddit"] = {"ids": [e.record.record_id for e in ex], "values": values}
  return out


# ---------------------------------------------------------------------------------------------
# Analysis: a pure function of the steps' outputs.

def _values(evals: dict, arm: str, test: str, seeds) -> np.ndarray:
  """float[S, N, F] of one arm on one test set, items checked to be the same for every arm and seed."""
  return np.asarray([evals[(arm, s)][test]["values"] for s in seeds], np.float64)


def analyse(spec: dict, runs: dict, evals: dict, base: dict, data_counts: dict) -> dict:
  seeds = spec["seeds"]
  first = evals[(next(iter(ARMS)), seeds[0])]
  for (arm, s), ev in evals.items():
    for test in TEST_METRICS:
      if ev[test]["ids"] != first[test]["ids"]:
        raise AssertionError(f"{arm} seed {s} was scored on other {test} items than {next(iter(ARMS))}")
  metrics, intervals, baselines = {}, {}, {}
  for test, names in TEST_METRICS.items():
    is_high = np.asarray(first[test]["values"], np.float64)[:, -1] if test != "reddit" else None
    for m in names:
      statistic, fields, chance = METRICS[m]
      vals = {arm: _values(evals, arm, test, seeds)[..., fields] for arm in ARMS}
      key = f"{test}/{m}"
      metrics[key] = {arm: stats.seed_summary([float(statistic(v[i])) for i in range(len(seeds))])
                      for arm, v in vals.items()}
      if m == "accuracy":
        # The majority class answers every item the same: its per-item hits, paired with the arms' items.
        hits = (is_high == float(base["majority_label"] == "high")).astype(np.float64)
        control = np.broadcast_to(hits[None, :, None], vals["video_only"].shape)
        baselines[key] = {"majority": float(hits.mean()), "chance": chance}
        against = {arm: stats.hierarchical_bootstrap(v, control, statistic) for arm, v in vals.items()}
      else:
        baselines[key] = {"majority": None, "chance": chance}
        against = {arm: stats.hierarchical_bootstrap(v, None, statistic, null=chance) for arm, v in vals.items()}
      intervals[key] = {
          "video_only - no_behavior": stats.hierarchical_bootstrap(vals["video_only"], vals["no_behavior"], statistic),
          "in_domain - video_only": stats.hierarchical_bootstrap(vals["in_domain"], vals["video_only"], statistic),
          **{f"{arm} - baseline": b for arm, b in against.items()},
          # Each arm's own interval (null 0): the whiskers of the bar plot.
          **{f"{arm} itself": stats.hierarchical_bootstrap(v, None, statistic) for arm, v in vals.items()},
      }
  seen = {arm: {f"seed{s}": runs[(arm, s)]["seen"] for s in seeds} for arm in ARMS}
  return {
      "study": NAME, "spec": spec, "arms": list(ARMS), "seeds": seeds, "data": data_counts,
      "test_sets": {t: {"items": len(first[t]["ids"]), "metrics": list(ms)} for t, ms in TEST_METRICS.items()},
      "majority_label": base["majority_label"], "upvote_levels": base["upvote_levels"],
      "runs": {arm: {f"seed{s}": runs[(arm, s)] for s in seeds} for arm in ARMS},
      "seen": seen, "metrics": metrics, "baselines": baselines, "intervals": intervals,
  }


def check_shape(result: dict) -> None:
  """Every arm x seed x test set is present, with its seed summary and its intervals (the smoke check)."""
  seeds = [f"seed{s}" for s in result["seeds"]]
  assert result["arms"] == list(ARMS), result["arms"]
  for arm in ARMS:
    assert sorted(result["runs"][arm]) == sorted(seeds), (arm, result["runs"][arm])
  for test, metric in COLUMNS:
    key = f"{test}/{metric}"
    assert result["test_sets"][test]["items"] > 0, test
    for arm in ARMS:
      assert len(result["metrics"][key][arm]["per_seed"]) == len(seeds), (key, arm)
    for name in ("video_only - no_behavior", "in_domain - video_only", *(f"{a} - baseline" for a in ARMS)):
      boot = result["intervals"][key][name]
      assert len(boot["ci95"]) == 2 and {"estimate", "se", "mde", "excludes_null"} <= set(boot), (key, name)
    assert key in result["baselines"], key


# ---------------------------------------------------------------------------------------------
# Rendering.

def _header() -> list[str]:
  return [""] + [f"{TEST_LABELS[t]}: {METRIC_LABELS[m]}" for t, m in COLUMNS]


def render(result: dict) -> str:
  spec = result["spec"]
  n = {t: result["test_sets"][t]["items"] for t in TEST_METRICS}
  rows = [[ARM_LABELS[arm]] + [report.mean_std(result["metrics"][f"{t}/{m}"][arm]) for t, m in COLUMNS]
          for arm in ARMS]
  for base in ("majority", "chance"):
    rows.append([f"{base} class" if base == "majority" else "chance"]
                + [report.fmt(result["baselines"][f"{t}/{m}"][base]) for t, m in COLUMNS])
  diffs = [["video-only − no behavior"] + [report.interval(result["intervals"][f"{t}/{m}"]["video_only - no_behavior"])
                                          for t, m in COLUMNS],
           ["in-domain − video-only"] + [report.interval(result["intervals"][f"{t}/{m}"]["in_domain - video_only"])
                                        for t, m in COLUMNS]]
  diffs += [[f"{ARM_LABELS[arm]} − baseline"] + [report.interval(result["intervals"][f"{t}/{m}"][f"{arm} - baseline"])
                                                 for t, m in COLUMNS] for arm in ARMS]
  seen = [[ARM_LABELS[arm]] + [report.fmt(int(np.mean([s[k] for s in result["seen"][arm].values()])))
                               for k in ("tokens", "loss_tokens", "images")] for arm in ARMS]
  levels = ", ".join(lv["words"] for lv in result["upvote_levels"])
  return "\n".join([
      f"### Behavior domain adaptation: train on videos, test on tweets and Reddit ({spec['mode']} mode)",
      "",
      f"`python experiments/domain_adaptation.py{' --smoke' if spec['mode'] == 'smoke' else ''}`: "
      f"{spec['config']}, {len(result['seeds'])} seed(s) x {spec['steps']} steps per arm, every arm from scratch "
      f"with one shared tokenizer; {spec['size']} corpus"
      + (" (reduced counts)" if spec["counts"] else "") + ". "
      f"Items: {n['tweets_time']} tweets (time split), {n['tweets_brand']} (brand split), {n['reddit']} Reddit posts. "
      "Tweets: the higher-scored of \"This tweet has high/low likes.\" (accuracy) and the AUC of "
      "log p(high) − log p(low); Reddit: Spearman of the expected log upvotes over the scored levels "
      f"({levels}) against the true upvotes.",
      "",
      "Mean ± std over seeds:",
      "",
      report.markdown_table(_header(), rows),
      "",
      "95% intervals (seeds, then items, resampled in pairs); baseline = the majority class for accuracy "
      f"(\"{result['majority_label']}\" for every tweet), chance otherwise:",
      "",
      report.markdown_table(_header(), diffs),
      "",
      "Seen per run (mean over seeds):",
      "",
      report.markdown_table(["arm", "input tokens", "loss tokens", "images"], seen),
  ])


def plots(root: str, result: dict, study: Study) -> list[str]:
  groups = [f"{TEST_LABELS[t]}\n{METRIC_LABELS[m]}" for t, m in COLUMNS]
  own = [[result["intervals"][f"{t}/{m}"][f"{arm} itself"] for arm in ARMS] for t, m in COLUMNS]
  means = [[b["estimate"] for b in row] for row in own]
  lows = [[b["ci95"][0] for b in row] for row in own]
  highs = [[b["ci95"][1] for b in row] for row in own]
  bars = report.bar_plot(os.path.join(root, f"{NAME}.png"), "Trained on videos, tested on tweets and Reddit",
                         groups, [ARM_LABELS[a] for a in ARMS], means, lows, highs,
                         ylabel="accuracy / AUC / Spearman")
  curves = report.learning_curves(
      os.path.join(root, "learning_curves.png"), "Training loss per arm (each on its own tasks)",
      {ARM_LABELS[a]: [os.path.join(study.workdir(f"seed{s}", a), "metrics.jsonl") for s in result["seeds"]]
       for a in ARMS})
  return [bars, curves]


# ---------------------------------------------------------------------------------------------

def run(root: str, spec: dict, results_md: str | None) -> dict:
  study = Study(root, NAME, spec)
  root = study.root
  data_counts = study.step("data", lambda: make_data(root, spec))
  study.step("tokenizer", lambda: make_tokenizer(root, spec))
  base = study.step("baselines", lambda: make_baselines(root, spec))
  runs, evals = {}, {}
  for seed in spec["seeds"]:
    for arm in ARMS:
      runs[(arm, seed)] = study.step(f"seed{seed}/{arm}/train", lambda: train_arm(root, spec, study, arm, seed))
      evals[(arm, seed)] = study.step(f"seed{seed}/{arm}/eval",
                                      lambda: evaluate_arm(root, spec, study, arm, seed, base))
  result = analyse(spec, runs, evals, base, data_counts)
  markdown = render(result)
  report.write_outputs(root, NAME, result, markdown, results_md)
  files = plots(root, result, study)
  print(markdown)
  print("\nseen per run (tokens / loss tokens / images):")
  for arm in ARMS:
    for s, seen in result["seen"][arm].items():
      print(f"  {arm:12s} {s}: {seen['tokens']:,} / {seen['loss_tokens']:,} / {seen['images']:,}")
  print(study.summary())
  print("\n".join(["written:", os.path.join(root, "result.json"), os.path.join(root, "results.md"), *files]
                  + ([f"{results_md} (block {NAME})"] if results_md else [])))
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/domain_adaptation")
  parser.add_argument("--smoke", action="store_true", help="the CI-sized study (tiny model, 1 seed, seconds)")
  parser.add_argument("--results-md", default=None, help="also update this file's study block (docs/results.md)")
  args = parser.parse_args(argv)
  spec = SMOKE if args.smoke else FULL
  result = run(args.workdir, spec, args.results_md)
  if args.smoke:
    check_shape(result)
  return 0


if __name__ == "__main__":
  from lcbm_jax.cli import errors   # importable once the checkout is on sys.path (above)
  # A user-fixable mistake (e.g. a workdir holding another study) is one line and exit 2.
  sys.exit(errors.exit_code(runner.resumable(main), prog=NAME))
