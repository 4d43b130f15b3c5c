"""Behavior-LLaVA's free lunch, tested on the embedded corpus: does learning behavior teach content?

  python experiments/free_lunch.py --workdir runs/free_lunch                  # full: 3 seeds, ~2 h on 2 cores
  python experiments/free_lunch.py --workdir runs/free_lunch --results-md docs/results.md
  python experiments/free_lunch.py --workdir /tmp/fl_smoke --smoke            # CI: tiny model, minutes

Per seed, from one corpus and one tokenizer (trained on all of its text, comments included):
  base      learns content only: the instruction rows about the media (captions, simple questions) and
            text-only world-knowledge rows that tie the label words to what people and captions say
  behavior  the base fine-tuned on BLIFT conversations (likes, top comments, replays) + instruction rows 1:1
  control   the base fine-tuned on the same records and steps with behavior removed: BLIFT's content-only twin
            restates each item's content where the behavior was, at the same expected length, so both
            arms pack the same rows and count about the same input and loss tokens (check (c))
Every arm (the base untouched too) is then asked about the hidden labels - tone, topic, memorability -
(i) zero-shot: one neutral question per label, every answer scored, the same prompt for every arm;
(ii) fine-tuned on 25%, 50% and 100% of N = 200 labelled items, then asked the same questions.
Tone is hidden from captions (it shows in the media and in the comments: where a free lunch could come
from); topic and memorability are visible in captions, the no-gain controls.

The table counts only if (a) the behavior arm learned behavior (replay RMSE below the per-scene mean,
interval excluding 0; the videos' like levels, read by scoring, above the majority level; Reddit upvote
levels are reported too, not checked: upvotes are no likes), (b) the positive control works (tone
fine-tuned on 100% is above chance, interval excluding chance), (c) the behavior and control arms saw
input and loss tokens within 5% of each other. It reports what it measured either way.

Full-mode budget on the 2-core box (0.4-0.8 s a step): data ~2 min; per seed base 600 steps, two arms of
800, nine fine-tunes of 50, 100 and 200 steps, twelve probe evaluations and one behavior evaluation,
~40 min; about 2 h in all (JAX's compilation cache in the workdir: each program compiles once). The study resumes: run the same command again after an interruption (even SIGKILL); finished runs
are reused (counted on the last line), an interrupted training run continues from its last checkpoint.
Outputs in --workdir: result.json (numbers only), results.md, free_lunch_*.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(_ROOT, "experiments", "configs", "free_lunch.py")
ARMS = ("base", "behavior", "control")
FRACTIONS = (25, 50, 100)
TASK_NOTES = {"tone": "hidden from captions (media and comments only)",
              "topic": "visible in captions: a no-gain control",
              "memorability": "visible in captions: a no-gain control"}
PARITY = 0.05   # check (c): the arms' input and loss tokens within 5%
MODES = {
    # corpus records per (source, split); labelled items N (half videos, half posts); probe test items
    "full": {"counts": {("cbc", "train"): 1800, ("cbc", "test"): 300, ("blift", "train"): 1500,
                        ("blift", "test"): 300},
             "labelled": 200, "test_items": 200, "behavior_items": 150, "seeds": 3,
             # Fine-tuning steps per labelled fraction: the same number of passes over each subset. At
             # 60 steps and lr 1e-3 for every fraction, no arm learned tone even on its training items
             # (0.28 on the 100% set's own items); 200 steps at 3e-3 reached 0.54 there, 0.42 held out.
             "finetune_steps": {25: 50, 50: 100, 100: 200}},
    "smoke": {"counts": {("cbc", "train"): 24, ("cbc", "test"): 8, ("blift", "train"): 24, ("blift", "test"): 8},
              "labelled": 8, "test_items": 8, "behavior_items": 6, "seeds": 2,
              "finetune_steps": {25: 2, 50: 2, 100: 2}},
}
NO_TWEETS = {("tweets", "train"): 0, ("tweets", "test_time"): 0, ("tweets", "test_brand"): 0}


# --------------------------------------------------------------------------------------------
# Data: the corpus, its tokenizer, the labelled sets, and the control's mixture.
# --------------------------------------------------------------------------------------------


def _balanced(rows: list[dict], n_items: int) -> list[dict]:
  """The label questions of the first n_items / 2 videos and n_items / 2 posts (three rows each)."""
  by_item: dict[str, list[dict]] = {}
  for r in rows:
    by_item.setdefault(r["id"].rpartition("/")[0], []).append(r)
  videos = [k for k, rs in by_item.items() if "video" in rs[0]]
  posts = [k for k, rs in by_item.items() if "image" in rs[0]]
  keep = videos[:n_items - n_items // 2] + posts[:n_items // 2]
  return [r for k in keep for r in by_item[k]]


def prepare_data(study, mode: dict, smoke: bool) -> dict:
  from data_pipeline import commands, pipeline, vocab, world   # after sys.path has the checkout (bottom)
  corpus, built = study.workdir("data", "corpus"), study.workdir("data", "built")

  def generate():
    m = world.generate(corpus, seed=0, size="small", counts={**NO_TWEETS, **mode["counts"]}, instructions=True,
                       knowledge=True, progress=not smoke)
    return {"records": m["total_records"], "label_questions": {e["split"]: e["count"] for e in m["label_questions"]}}

  def build():
    reports = commands.build_corpus("behavior_world", corpus, built)
    return {r["dataset"]: {s: c["records"] for s, c in r["splits"].items()} for r in reports}

  def tokenizer():
    # One tokenizer for every arm, from every text the study trains on: BLIFT conversations (comments
    # included), the instruction and knowledge rows, and the label questions' answers (in the knowledge rows).
    train = pipeline.Corpus(built, "train")
    cfg = _model_cfg(smoke)
    tok = vocab.train_corpus_tokenizer(train, ("blift", "instruction"), vocab_size=cfg.text.vocab_size,
                                       max_images=cfg.max_images, seed=0, max_records=len(train), twins=True,
                                       out_dir=study.workdir("data", "tokenizer"))
    return {"vocab_size": tok.vocab_size}

  def labels(pct: int):
    out = study.workdir("data", f"labels_{pct}")
    src = os.path.join(out, "json")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(corpus, "labels", "train.json")) as f:
      train = _balanced(json.load(f), mode["labelled"])
    with open(os.path.join(corpus, "labels", "test.json")) as f:
      test = _balanced(json.load(f), mode["test_items"])
    n_items = len(train) // 3 * pct // 100
    for name, rows in (("train", train[:3 * n_items]), ("test", test)):
      with open(os.path.join(src, f"{name}.json"), "w") as f:
        json.dump(rows, f)
    reports = commands.build_corpus("llava_json", src, os.path.join(out, "data"), media_root=corpus)
    return {"items": n_items, "questions": {s: c["records"] for s, c in reports[0]["splits"].items()}}

  info = {"corpus": study.step("data/corpus", generate), "built": study.step("data/build", build),
          "tokenizer": study.step("data/tokenizer", tokenizer)}
  info["labels"] = {pct: study.step(f"data/labels_{pct}", lambda pct=pct: labels(pct)) for pct in FRACTIONS}
  info["row_lengths"] = study.step("data/row_lengths", lambda: row_lengths(built, study.workdir("data", "tokenizer"),
                                                                           smoke))
  return info


def _model_cfg(smoke: bool):
  from lcbm_jax.training import config as config_lib, train   # as in prepare_data
  return train.model_config(config_lib.load(f"{CONFIG}:base{',cpu' if smoke else ''}"))


def row_lengths(built: str, tokenizer_dir: str, smoke: bool) -> dict:
  """Mean input and loss tokens per training row of each arm's BLIFT rows and of the instruction rows,
  every row encoded once as training encodes it: what check (c) expects before any step is taken."""
  from data_pipeline import pipeline, tokenizer as tokenizer_lib, verbalize   # as in prepare_data
  from data_pipeline.codec import Codec
  cfg = _model_cfg(smoke)
  codec = Codec(tokenizer_lib.load(tokenizer_dir), cfg.num_image_tokens)
  train = pipeline.Corpus(built, "train")
  rng = np.random.default_rng(0)
  sums = {k: np.zeros(3) for k in ("blift", "blift_twin", "instruction")}   # rows, tokens, loss tokens
  for i in range(len(train)):
    record = train[i]
    for key, task, twin in (("blift", "blift", False), ("blift_twin", "blift", True),
                            ("instruction", "instruction", False)):
      if verbalize.applies(record, task, train.context):
        enc = codec.encode(verbalize.verbalize(record, task, rng=rng, max_images=cfg.max_images, content_only=twin,
                                               context=train.context))
        sums[key] += (1, len(enc.ids), int(enc.flags.sum()))
  return {k: {"rows": int(v[0]), "tokens": float(v[1] / max(v[0], 1)), "loss_tokens": float(v[2] / max(v[0], 1))}
          for k, v in sums.items()}


# --------------------------------------------------------------------------------------------
# Runs: training stages, probes, the behavior check.
# --------------------------------------------------------------------------------------------


def train_stage(stage: str, workdir: str, overrides: list[str], smoke: bool) -> dict:
  from lcbm_jax.study import runner   # as in prepare_data
  from lcbm_jax.training import config as config_lib
  config = config_lib.load(f"{CONFIG}:{stage}{',cpu' if smoke else ''}", overrides)
  return runner.train_run(config, workdir, f"{stage} {os.path.relpath(workdir)}")


def probe(workdir: str, labels_dir: str, items: int) -> dict:
  from lcbm_jax import artifacts   # as in prepare_data
  from lcbm_jax.study import probes
  cfg, params, tok = artifacts.load_for_inference(workdir)
  return probes.label_probe(cfg, params, tok, labels_dir, items=items)


def behavior_check(workdir: str, built: str, items: int) -> dict:
  """The behavior arm's BLIFT predictions on held-out videos and posts: generated (replay, likes,
  upvotes, their levels; `lcbm eval --tasks blift`) and like levels read by scoring."""
  from lcbm_jax import artifacts   # as in prepare_data
  from lcbm_jax.evaluation import run as eval_run
  from lcbm_jax.study import probes
  cfg, params, tok = artifacts.load_for_inference(workdir)
  return {**eval_run.evaluate(cfg, params, tok, built, ["blift"], items)["blift"],
          "scored_levels": probes.like_levels(cfg, params, tok, built, items=items)}


def run_seed(study, seed: int, data: dict, mode: dict, smoke: bool) -> dict:
  built = study.workdir("data", "built")
  tok = study.workdir("data", "tokenizer")
  wd = {arm: study.workdir(f"seed{seed}", arm) for arm in ARMS}
  common = [f"--config.seed={seed}"]
  out: dict = {"train": {}, "zero_shot": {}, "finetuned": {}}
  out["train"]["base"] = study.step(f"seed{seed}/base/train", lambda: train_stage(
      "base", wd["base"], [*common, f"--config.data.dir={built}", f"--config.data.tokenizer={tok}"], smoke))
  for arm in ("behavior", "control"):
    out["train"][arm] = study.step(f"seed{seed}/{arm}/train", lambda arm=arm: train_stage(
        arm, wd[arm], [*common, f"--config.data.dir={built}", f"--config.init.checkpoint={wd['base']}"], smoke))
  labels_dir = {pct: study.workdir("data", f"labels_{pct}", "data") for pct in FRACTIONS}
  for arm in ARMS:
    out["zero_shot"][arm] = study.step(f"seed{seed}/{arm}/zero_shot", lambda arm=arm: probe(
        wd[arm], labels_dir[100], mode["test_items"]))
    for pct in FRACTIONS:
      ft = study.workdir(f"seed{seed}", f"{arm}_ft{pct}")
      study.step(f"seed{seed}/{arm}/ft{pct}/train", lambda arm=arm, pct=pct, ft=ft: train_stage(
          "finetune", ft, [*common, f"--config.data.dir={labels_dir[pct]}", f"--config.init.checkpoint={wd[arm]}",
                           f"--config.num_steps={mode['finetune_steps'][pct]}"], smoke))
      out["finetuned"].setdefault(arm, {})[pct] = study.step(f"seed{seed}/{arm}/ft{pct}/probe", lambda ft=ft: probe(
          ft, labels_dir[100], mode["test_items"]))
  out["behavior"] = study.step(f"seed{seed}/behavior/behavior_check", lambda: behavior_check(
      wd["behavior"], built, mode["behavior_items"]))
  return out


# --------------------------------------------------------------------------------------------
# The result: per arm and seed, intervals of (behavior - control), the three checks.
# --------------------------------------------------------------------------------------------


def _stat(task: str):
  from lcbm_jax.study import stats   # as in prepare_data
  return stats.SPEARMAN if task == "memorability" else stats.MEAN


def _compare(per_seed: dict, chance: dict) -> dict:
  """per_seed[arm] = [probe output of each seed] -> {task: {"arms": {arm: seed summary}, "diff": ..., ...}}."""
  from lcbm_jax.study import stats   # as in prepare_data
  out = {}
  for task in TASK_NOTES:
    values = {arm: np.array([p[task]["values"] for p in runs]) for arm, runs in per_seed.items()}
    fn = _stat(task)
    row = {"metric": "spearman" if task == "memorability" else "accuracy",
           "arms": {arm: stats.seed_summary(fn(v)) for arm, v in values.items()},
           # Each arm's own 95% interval (seeds, then items): the whiskers of the bar plots.
           "arms_ci95": {arm: stats.hierarchical_bootstrap(v, None, fn)["ci95"] for arm, v in values.items()},
           "behavior_minus_control": stats.hierarchical_bootstrap(values["behavior"], values["control"], fn),
           "behavior_minus_base": stats.hierarchical_bootstrap(values["behavior"], values["base"], fn)}
    if task in chance:
      row["chance"] = chance[task]
      row["behavior_vs_chance"] = stats.hierarchical_bootstrap(values["behavior"], None, fn, null=chance[task])
      row["control_vs_chance"] = stats.hierarchical_bootstrap(values["control"], None, fn, null=chance[task])
    out[task] = row
  return out


def build_result(seeds: list[int], runs: dict, data: dict, mode_name: str) -> dict:
  chance = {"tone": 0.25, "topic": 0.25}
  zero = _compare({arm: [runs[s]["zero_shot"][arm] for s in seeds] for arm in ARMS}, chance)
  fine = {str(pct): _compare({arm: [runs[s]["finetuned"][arm][str(pct)] for s in seeds] for arm in ARMS}, chance)
          for pct in FRACTIONS}
  tokens = {arm: [runs[s]["train"][arm]["seen"] for s in seeds] for arm in ARMS}
  # (a) behavior learned, every seed: replay below the per-scene mean (its interval, videos resampled,
  # excludes 0), and like levels - the videos' share of viewers who like them, scored - above the
  # majority level. Reddit upvotes are no likes; their levels are reported next to them, not checked.
  from lcbm_jax.study import stats   # as in prepare_data
  learned = []
  for s in seeds:
    b = runs[s]["behavior"]
    replay = b.get("replay_rmse", {})
    lo, hi = replay.get("ci95_vs_position_mean", [float("nan")] * 2)
    scored = b.get("scored_levels", {})
    levels = {kind: {"accuracy": float(np.mean(v["hits"])), "majority": float(np.mean(v["majority"])),
                     "n": len(v["hits"]), "predicted": v["predicted"]} for kind, v in scored.items()}
    generated = {k: {"accuracy": b[k]["model"], "majority": b[k]["baselines"]["majority"], "n": b[k]["n"]}
                 for k in ("upvotes_level", "liked_percent_level") if k in b}
    video = levels.get("video")
    learned.append({"seed": s, "replay_rmse": replay.get("model"),
                    "position_mean_rmse": replay.get("baselines", {}).get("position_mean"),
                    "ci95_vs_position_mean": [lo, hi], "replay_ok": bool(hi < 0), "scored_levels": levels,
                    "generated_levels": generated,
                    "levels_ok": bool(video) and video["accuracy"] > video["majority"]})
  video_hits = [runs[s]["behavior"].get("scored_levels", {}).get("video") for s in seeds]
  if all(video_hits) and len({len(v["hits"]) for v in video_hits}) == 1:
    level_interval = stats.hierarchical_bootstrap([v["hits"] for v in video_hits], [v["majority"] for v in video_hits])
  else:
    level_interval = None
  positive = fine["100"]["tone"]
  ratios = {k: [bt[k] / max(ct[k], 1) for bt, ct in zip(tokens["behavior"], tokens["control"])]
            for k in ("tokens", "loss_tokens")}
  checks = {
      "a_behavior_learned": {"ok": all(x["replay_ok"] and x["levels_ok"] for x in learned), "per_seed": learned,
                             "video_levels_minus_majority": level_interval},
      "b_positive_control": {"ok": all(positive[f"{arm}_vs_chance"]["excludes_null"] and
                                       positive[f"{arm}_vs_chance"]["estimate"] > 0 for arm in ("behavior", "control")),
                             "what": "tone after fine-tuning on 100% of the labelled items, vs chance 0.25"},
      "c_token_parity": {"ok": all(abs(r - 1) <= PARITY for rs in ratios.values() for r in rs),
                         "behavior_over_control": ratios, "tolerance": PARITY},
  }
  return {"study": "free_lunch", "mode": mode_name, "seeds": seeds, "arms": list(ARMS),
          "fractions": list(FRACTIONS), "task_notes": TASK_NOTES, "zero_shot": zero, "finetuned": fine,
          "tokens": tokens, "row_lengths": data["row_lengths"], "labels": data["labels"], "checks": checks,
          "counts": all(c["ok"] for c in checks.values())}


def render(result: dict) -> str:
  from lcbm_jax.study import report   # as in prepare_data
  lines = [f"Free lunch ({result['mode']} mode, seeds {', '.join(map(str, result['seeds']))}): content understanding "
           "of the base, behavior and control arms, mean ± std over seeds; the difference (behavior - control) "
           "with its 95% interval (hierarchical bootstrap: seeds, then test items), and the minimal detectable "
           "effect next to each null. Tone and topic: accuracy (chance 0.25); memorability: Spearman.", ""]
  rows = []
  for setting, block in [("zero-shot", result["zero_shot"])] + [(f"fine-tuned {p}%", result["finetuned"][str(p)])
                                                                 for p in result["fractions"]]:
    for task, r in block.items():
      rows.append([setting, task, *(report.mean_std(r["arms"][a]) for a in result["arms"]),
                   report.interval(r["behavior_minus_control"]), result["task_notes"][task]])
  lines.append(report.markdown_table(["setting", "task", *result["arms"], "behavior - control", "note"], rows))
  c = result["checks"]
  a = c["a_behavior_learned"]["per_seed"]
  lines += ["", "Checks (the table counts only if all hold):", ""]
  def levels(x, kind):
    lv = x["scored_levels"].get(kind)
    return f"{lv['accuracy']:.2f} vs majority {lv['majority']:.2f}" if lv else "-"

  lines.append(f"- (a) behavior learned: {'yes' if c['a_behavior_learned']['ok'] else 'NO'} - "
               + "; ".join(f"seed {x['seed']}: replay RMSE {report.fmt(x['replay_rmse'])} vs per-scene mean "
                           f"{report.fmt(x['position_mean_rmse'])} (diff CI [{x['ci95_vs_position_mean'][0]:+.2f}, "
                           f"{x['ci95_vs_position_mean'][1]:+.2f}]), video like levels {levels(x, 'video')}"
                           for x in a)
               + (f"; video levels - majority over seeds {report.interval(c['a_behavior_learned']['video_levels_minus_majority'])}"
                  if c["a_behavior_learned"]["video_levels_minus_majority"] else ""))
  lines.append("  Not checked, reported: Reddit upvote levels (scored) "
               + "; ".join(f"seed {x['seed']}: {levels(x, 'post')}" for x in a)
               + "; levels of the generated numbers "
               + "; ".join(f"seed {x['seed']}: " + ", ".join(f"{k.replace('_level', '')} {g['accuracy']:.2f} vs {g['majority']:.2f}"
                                                         for k, g in x["generated_levels"].items()) for x in a) + ".")
  pc = result["finetuned"]["100"]["tone"]
  lines.append(f"- (b) positive control: {'yes' if c['b_positive_control']['ok'] else 'NO'} - tone fine-tuned on "
               f"100%: behavior {report.interval(pc['behavior_vs_chance'])}, control "
               f"{report.interval(pc['control_vs_chance'])} above chance")
  r = c["c_token_parity"]["behavior_over_control"]
  lines.append(f"- (c) token parity: {'yes' if c['c_token_parity']['ok'] else 'NO'} - behavior / control input tokens "
               + ", ".join(f"{x:.3f}" for x in r["tokens"]) + "; loss tokens "
               + ", ".join(f"{x:.3f}" for x in r["loss_tokens"])
               + " (per BLIFT row, behavior / twin: {:.1f} / {:.1f} tokens, {:.1f} / {:.1f} loss tokens)".format(
                   *(result["row_lengths"][k][f] for f in ("tokens", "loss_tokens") for k in ("blift", "blift_twin"))))
  tok_rows = [[arm, *(f"{t['tokens']:,} / {t['loss_tokens']:,}" for t in result["tokens"][arm])]
              for arm in result["arms"]]
  lines += ["", "Tokens each arm's own training saw (input / loss), per seed:", "",
            report.markdown_table(["arm", *(f"seed {s}" for s in result["seeds"])], tok_rows)]
  lines += ["", f"**The table {'counts' if result['counts'] else 'does not count'}**"
            + ("." if result["counts"] else ": a check above failed, so a null here is not a result.")]
  return "\n".join(lines)


def plots(result: dict, study, out_dir: str) -> list[str]:
  from lcbm_jax.study import report   # as in prepare_data
  paths = []
  for task in TASK_NOTES:
    groups = ["zero-shot"] + [f"ft {p}%" for p in result["fractions"]]
    blocks = [result["zero_shot"][task]] + [result["finetuned"][str(p)][task] for p in result["fractions"]]
    means = [[b["arms"][a]["mean"] for a in result["arms"]] for b in blocks]
    lows = [[b["arms_ci95"][a][0] for a in result["arms"]] for b in blocks]
    highs = [[b["arms_ci95"][a][1] for a in result["arms"]] for b in blocks]
    paths.append(report.bar_plot(os.path.join(out_dir, f"free_lunch_{task}.png"), f"{task}: mean over seeds, 95% interval",
                                 groups, result["arms"], means, lows, highs,
                                 ylabel="Spearman" if task == "memorability" else "accuracy",
                                 chance=None if task == "memorability" else 0.25))
  curves = {arm: [os.path.join(study.workdir(f"seed{s}", arm), "metrics.jsonl") for s in result["seeds"]]
            for arm in result["arms"]}
  paths.append(report.learning_curves(os.path.join(out_dir, "free_lunch_curves.png"), "training loss", curves))
  return paths


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/free_lunch")
  parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps: the shape of the table in minutes")
  parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: 3 full, 2 smoke)")
  parser.add_argument("--results-md", default=None, help="also replace the free_lunch block of this file")
  args = parser.parse_args(argv)
  from lcbm_jax.study import report   # after sys.path has the checkout (bottom)
  from lcbm_jax.study.runner import Study
  from lcbm_jax.training import config as config_lib
  mode_name = "smoke" if args.smoke else "full"
  mode = MODES[mode_name]
  seeds = list(range(args.seeds or mode["seeds"]))
  # What every finished step depends on: the mode's sizes and each stage's config as it loads now (an edit
  # to experiments/configs/free_lunch.py between sittings is another study, not a silent mix). Not the
  # seeds: each seed's runs are its own steps, so a study asked for more seeds reuses the ones it has.
  stages = {st: config_lib.load(f"{CONFIG}:{st}{',cpu' if args.smoke else ''}").to_dict()
            for st in ("base", "behavior", "control", "finetune")}
  spec = {"mode": mode_name, **{k: v for k, v in mode.items() if k not in ("counts", "seeds")},
          "counts": {f"{s}/{p}": n for (s, p), n in mode["counts"].items()}, "stages": stages}
  study = Study(args.workdir, "free_lunch", spec)
  data = prepare_data(study, mode, args.smoke)
  # As the steps read back from disk (fractions as string keys), whether they ran now or before.
  runs = {s: json.loads(json.dumps(run_seed(study, s, data, mode, args.smoke))) for s in seeds}
  # Rendered as result.json holds it (JSON types), so docs/results.md's table re-renders from that file.
  result = json.loads(json.dumps(build_result(seeds, runs, data, mode_name), default=float))
  markdown = render(result)
  report.write_outputs(study.root, "free_lunch", result, markdown, args.results_md)
  for p in plots(result, study, study.root):
    print(f"plot: {p}")
  print(markdown)
  print(study.summary())
  return 0


if __name__ == "__main__":
  sys.path.insert(0, _ROOT)   # runs from a checkout even before `pip install -e .`
  from lcbm_jax.cli import errors   # importable once the checkout is on sys.path
  from lcbm_jax.study import runner
  sys.exit(errors.exit_code(runner.resumable(main), prog="free_lunch"))
