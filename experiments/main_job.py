"""The CPU main job: generate the embedded corpus, build it, train the demo model, evaluate it
against baselines, export it to Hugging Face, and say where everything is.

  make demo            # = pip install -e . && python experiments/main_job.py --workdir runs/demo
  python experiments/main_job.py --workdir runs/demo2 --config.num_steps=800   # demo.py overrides

Budget on a 2-core CPU: data < 0.5 min, training 7-12 min, eval ~1 min, export < 0.5 min (13.5 min measured on
the slower box). Re-running
with the same workdir reuses the data and resumes (or skips) training from the last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(_ROOT, "experiments", "configs", "demo.py")
EVAL_TASKS = ("behavior_simulation", "likes_high_low")
EVAL_EXAMPLES = 150  # per task and split (150 test videos hold about 600 scenes)


def _stage(name: str, times: dict):
  """Prints a banner and records the wall time of the block under `name`."""
  class Timer:
    def __enter__(self):
      print(f"\n=== {name} ===", flush=True)
      self.t0 = time.perf_counter()

    def __exit__(self, *exc):
      times[name] = time.perf_counter() - self.t0
      print(f"--- {name}: {times[name]:.0f} s", flush=True)
  return Timer()


def _verdict(results: dict) -> list[tuple[str, float, str, float, str, bool]]:
  """(what, model, baseline name, baseline, note, clearly better?) for the two headline behaviors.

  Replay counts as better only when the 95% interval of (model - per-scene mean), videos resampled
  in pairs, lies wholly on the better side; like levels when accuracy beats the majority class."""
  rows = []
  for key, what, sign in (("replay_rmse", "replay RMSE (lower is better)", -1),
                          ("replay_acc<=5", "replay accuracy |err|<=5", 1)):
    r = results["behavior_simulation"][key]
    base = r["baselines"]["position_mean"]
    lo, hi = r["ci95_vs_position_mean"]
    rows.append((what, r["model"], "mean replay per scene", base, f"diff 95% CI [{lo:+.3f}, {hi:+.3f}]",
                 hi < 0 if sign < 0 else lo > 0))
  for split in ("time", "brand"):
    acc = results.get(f"likes_high_low/{split}", {}).get("accuracy")
    if acc:
      base = acc["baselines"]["majority"]
      rows.append((f"likes high/low accuracy ({split} split)", acc["model"], "majority class", base,
                   f"n={acc['n']}", acc["model"] > base))
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/demo")
  # medium: 1,800 training videos. The 360 of `small` are memorised before the model learns to read
  # each scene (held-out replay loss turns up after ~500 steps; docs/performance.md).
  parser.add_argument("--size", default="medium", choices=("small", "medium"), help="generated corpus size")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)} (only --config.KEY=VALUE overrides pass through)")
  workdir = os.path.abspath(args.workdir)
  corpus, data, train_dir, hf_dir = (os.path.join(workdir, d) for d in ("corpus", "data", "train", "hf"))
  times: dict[str, float] = {}
  t_start = time.perf_counter()

  # Imported here, after sys.path has the checkout (see the bottom) and `--help` has been answered.
  import jax
  from data_pipeline import commands, world
  from lcbm_jax import artifacts
  from lcbm_jax.evaluation import run as eval_run
  from lcbm_jax.evaluation import table
  from lcbm_jax.export import hf
  from lcbm_jax.training import config as config_lib
  from lcbm_jax.training import train

  with _stage("data", times):
    if not os.path.exists(os.path.join(corpus, "manifest.json")):
      # The demo's tasks read no instruction conversations: the corpus is written without them, so
      # every record the job reads is one a task can use (and its figures stay those of docs/results.md).
      world.generate(corpus, seed=0, size=args.size, instructions=False)
    if not os.path.isdir(data):
      for report in commands.build_corpus("behavior_world", corpus, data):
        counts = ", ".join(f"{s} {c['records']}" for s, c in report["splits"].items())
        print(f"built {report['dataset']}: {counts} records, "
              f"{sum(c['quarantined'] for c in report['splits'].values())} quarantined")

  with _stage("train", times):
    config = config_lib.load(CONFIG, [f"--config.data.dir={data}", *overrides])
    summary = train.train(config, train_dir)
    print(json.dumps({k: v for k, v in summary.items() if k != "workdir"}, indent=1))
  if summary["preempted"]:
    print(f"training was stopped at step {summary['step']} and checkpointed; run the same command to resume")
    return 0

  with _stage("eval", times):
    cfg, params, tok = artifacts.load_for_inference(train_dir)
    results = eval_run.evaluate(cfg, params, tok, data, EVAL_TASKS, EVAL_EXAMPLES)
    print(table.format_table(results))
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(results, f, indent=1, default=float)

  with _stage("export", times):
    if not os.path.isdir(hf_dir):
      hf.save_llava(hf_dir, cfg, jax.device_get(params), tok)
    print(f"Hugging Face LlavaForConditionalGeneration directory: {hf_dir}")

  print("\n=== model vs baselines ===")
  verdict = _verdict(results)
  for what, model, base_name, base, note, better in verdict:
    print(f"{what:38s} model {model:7.3f}   {base_name:21s} {base:7.3f}   {(model - base) / base:+6.1%}   "
          f"{note:28s} {'BETTER' if better else 'not clearly better'}")
  total = time.perf_counter() - t_start
  print("\n=== where everything is ===")
  for name, path in (("corpus", corpus), ("built data", data), ("checkpoints", os.path.join(train_dir, "checkpoints")),
                     ("metrics", os.path.join(train_dir, "metrics.jsonl")),
                     ("tensorboard", os.path.join(train_dir, "tensorboard")),
                     ("plot", os.path.join(train_dir, "metrics.png")), ("eval", os.path.join(workdir, "eval.json")),
                     ("hf export", hf_dir)):
    print(f"{name:12s} {path}")
  print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f", total {total / 60:.1f} min")
  if "mfu" in summary:
    print(f"training throughput {summary['tokens_per_s']:.0f} tokens/s, "
          f"{summary['mfu'] * summary['peak_flops'] / 1e9:.1f} GFLOP/s = MFU {100 * summary['mfu']:.1f}% "
          f"of the measured {summary['peak_flops'] / 1e9:.1f} GFLOP/s matmul peak")
  return 0 if all(v[-1] for v in verdict) else 1


if __name__ == "__main__":
  sys.path.insert(0, _ROOT)   # runs from a checkout even before `pip install -e .`
  from lcbm_jax.cli import errors   # importable once the checkout is on sys.path
  # A user-fixable mistake (e.g. a bad --config override) is one line and exit 2.
  sys.exit(errors.exit_code(main, prog="main_job"))
