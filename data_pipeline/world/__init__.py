"""The embedded behavior corpus: a deterministic generator writing the public schemas with media.

`generate(DIR, seed=S, size="small"|"medium"|"large")` (`lcbm data generate --out DIR`) writes

  DIR/cbc/{train,test}.parquet            YouTube videos in the Content Behavior Corpus schema
  DIR/cbc/media/<video_id>.gif            one keyframe per scene (64x64, or `media_size`), named by `media_path`
  DIR/blift/{train,test}.jsonl            Reddit r/pics posts in the BLIFT schema (+ `score` upvotes)
  DIR/blift/media/<id>.png
  DIR/tweets/{train,test_time,test_brand}.jsonl   brand tweets (time-split and brand-split test sets)
  DIR/tweets/media/<id>.jpg
  DIR/llava/{train,test}.json             instruction rows about the videos' and posts' media, LLaVA's
                                          conversation JSON; media paths relative to DIR (`instructions`)
  DIR/labels/{train,test}.json            with `knowledge=True`: three labelled questions per video and post
                                          (tone, topic, memorability; `knowledge`), and text-only
                                          world-knowledge rows at the end of llava/train.json
  DIR/latent.jsonl                        hidden labels per record_id (tone, topic, memorability)
  DIR/manifest.json                       seed, size, version, files and record counts
  DIR/README.md

`audience` holds what the world contains and the hidden audience model, `media` the drawing,
`items` one record of each schema, `instructions` the conversations about their media, `writers`
the files, `latent` reading the hidden labels back.
`data_pipeline.sources.behavior_world` reads a generated directory through the public-schema readers.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from data_pipeline.world import instructions as instructions_lib
from data_pipeline.world import knowledge as knowledge_lib
from data_pipeline.world import media as media_lib
from data_pipeline.world import writers
from data_pipeline.world.audience import (HELD_OUT_BRANDS, OBJECT_APPEAL, TONE_COMMENTS, TONES, TOPICS,
                                          make_accounts, tone_probe_openings)
from data_pipeline.world.items import DAYS, LONG_SCENES, MAX_SCENES, MIN_SCENES, make_post, make_tweet, make_video
from data_pipeline.world.latent import LATENT_FILE, find_latent, load_latent
from data_pipeline.world.media import IMAGE_SIZE
from data_pipeline.world.writers import MANIFEST_FILE, write_cbc_parquet
from lcbm_jax.errors import UserError

__all__ = ["GENERATOR_VERSION", "IMAGE_SIZE", "LATENT_FILE", "LONG_SCENES", "MANIFEST_FILE", "MAX_SCENES",
           "MIN_SCENES", "OBJECT_APPEAL", "SIZES", "TONES", "TONE_COMMENTS", "TOPICS", "find_latent", "generate",
           "load_latent", "tone_probe_openings", "write_cbc_parquet"]

# v3: + llava/{train,test}.json instruction rows and the manifest's "instructions" (other files as in v2).
GENERATOR_VERSION = "behavior-world-v3"
SIZES = {  # records per (source, split)
    "small": {("cbc", "train"): 360, ("cbc", "test"): 60, ("blift", "train"): 300, ("blift", "test"): 60,
              ("tweets", "train"): 700, ("tweets", "test_time"): 120, ("tweets", "test_brand"): 120},
}
SIZES["medium"] = {k: 5 * v for k, v in SIZES["small"].items()}
SIZES["large"] = {k: 25 * v for k, v in SIZES["small"].items()}
TIME_SPLIT_DAY = 930   # tweets after this day form the time-split test set


def generate(out_dir: str, *, seed: int = 0, size: str = "small", progress: bool = True,
             counts: dict[tuple[str, str], int] | None = None, instructions: bool | None = None,
             scenes: tuple[int, int] | None = None, knowledge: bool = False,
             media_size: int | None = None) -> dict[str, Any]:
  """Writes the corpus under `out_dir`; returns the manifest. Same seed and size -> same bytes.
  `counts` overrides the records per (source, split) of `size` (tests use a few records).
  `instructions`: write llava/{train,test}.json; by default yes for a named size, no with `counts`
  (a test gets the files it asks for). `scenes`: (fewest, most) scenes per video, e.g. LONG_SCENES
  for k-BFT; None = MIN_SCENES..MAX_SCENES, byte for byte the corpus without the option.
  `knowledge`: also the content-understanding probes' files (`knowledge`): text-only world-knowledge
  rows appended to llava/train.json (needs `instructions`), and labels/{train,test}.json, three labelled
  questions (tone, topic, memorability) per video and post, built apart from the corpus (`lcbm data
  build llava_json`) so no training run reads them by accident. `media_size`: every image and keyframe
  at this many pixels a side, with photo-like grain (`media.resized`; `lcbm bench data --build`
  measures build speed on them); None = IMAGE_SIZE, byte for byte the corpus without the option."""
  if size not in SIZES:
    raise UserError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
  scene_range = (MIN_SCENES, MAX_SCENES) if scenes is None else tuple(int(n) for n in scenes)
  if len(scene_range) != 2 or not 1 <= scene_range[0] <= scene_range[1]:
    raise UserError(f"scenes per video {scenes!r} must be (fewest, most) with 1 <= fewest <= most")
  if media_size is not None and not 16 <= media_size <= 4096:
    raise UserError(f"media size {media_size} must be 16-4096 pixels")
  resize = (lambda data: media_lib.resized(data, media_size)) if media_size else (lambda data: data)
  if instructions is None:
    instructions = counts is None
  counts = {**SIZES[size], **(counts or {})}
  for sub in ("cbc/media", "blift/media", "tweets/media"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  root = np.random.SeedSequence([seed, 20240917])
  # One independent stream per (source); items draw from their source's stream in order. The
  # instruction stream is spawned fifth, so the first four (and their files) are those of v2.
  # The knowledge stream is sixth: spawning six children leaves the first five as they were.
  s_acc, s_cbc, s_blift, s_tw, s_inst, s_know = (np.random.default_rng(s) for s in root.spawn(6))
  if knowledge and not instructions:
    raise UserError("knowledge rows go into the instruction rows (llava/train.json); generate with instructions")
  accounts = make_accounts(s_acc)
  latent_rows: list[dict[str, Any]] = []
  files: list[dict[str, Any]] = []
  # split -> (is a video, record id, media path relative to out_dir, scenes): what instruction rows describe
  described: dict[str, list[tuple[bool, str, str, list]]] = {"train": [], "test": []}
  total = sum(counts.values())
  bar = tqdm(total=total, desc="generate", file=sys.stderr, disable=not progress)

  idx = 0
  for split in ("train", "test"):
    rows = []
    for _ in range(counts[("cbc", split)]):
      acc = accounts[int(s_cbc.integers(len(accounts)))]
      row, gif, latent, specs = make_video(idx, acc, s_cbc, scene_range)
      writers.write_bytes(os.path.join(out_dir, "cbc", row["media_path"]), resize(gif))
      rows.append(row)
      described[split].append((True, row["video_id"], f"cbc/{row['media_path']}", specs))
      latent_rows.append({"record_id": row["video_id"], "source": "cbc", "split": split, **latent})
      idx += 1
      bar.update()
    write_cbc_parquet(rows, os.path.join(out_dir, "cbc", f"{split}.parquet"))
    files.append({"source": "cbc", "split": split, "path": f"cbc/{split}.parquet", "count": len(rows)})

  idx = 0
  for split in ("train", "test"):
    rows = []
    for _ in range(counts[("blift", split)]):
      row, png, latent, specs = make_post(idx, s_blift)
      writers.write_bytes(os.path.join(out_dir, "blift", row["url"]), resize(png))
      rows.append(row)
      described[split].append((False, row["id"], f"blift/{row['url']}", specs))
      latent_rows.append({"record_id": row["id"], "source": "blift", "split": split, **latent})
      idx += 1
      bar.update()
    writers.write_jsonl(rows, os.path.join(out_dir, "blift", f"{split}.jsonl"))
    files.append({"source": "blift", "split": split, "path": f"blift/{split}.jsonl", "count": len(rows)})

  seen = [a for a in accounts if a.brand not in HELD_OUT_BRANDS]
  held = [a for a in accounts if a.brand in HELD_OUT_BRANDS]
  plan = ([("train", a, int(s_tw.integers(TIME_SPLIT_DAY))) for a in
           (seen[int(s_tw.integers(len(seen)))] for _ in range(counts[("tweets", "train")]))]
          + [("test_time", a, int(s_tw.integers(TIME_SPLIT_DAY, DAYS))) for a in
             (seen[int(s_tw.integers(len(seen)))] for _ in range(counts[("tweets", "test_time")]))]
          + [("test_brand", a, int(s_tw.integers(DAYS))) for a in
             (held[int(s_tw.integers(len(held)))] for _ in range(counts[("tweets", "test_brand")]))])
  by_split: dict[str, list[dict[str, Any]]] = {"train": [], "test_time": [], "test_brand": []}
  for i, (split, acc, day) in enumerate(plan):
    row, jpg, latent, _ = make_tweet(i, acc, day, s_tw)
    writers.write_bytes(os.path.join(out_dir, "tweets", row["media"][0]), resize(jpg))
    by_split[split].append(row)
    latent_rows.append({"record_id": row["id"], "source": "tweets", "split": split, **latent})
    bar.update()
  bar.close()
  for split, rows in by_split.items():
    rows.sort(key=lambda r: (r["date"], r["id"]))
    writers.write_jsonl(rows, os.path.join(out_dir, "tweets", f"{split}.jsonl"))
    files.append({"source": "tweets", "split": split, "path": f"tweets/{split}.jsonl", "count": len(rows)})

  # Instruction rows: listed apart from `files` (they are not behavior records; their media are the
  # videos' and posts', so their media root is the corpus directory, as LLaVA's image folder).
  conversations: list[dict[str, Any]] = []
  if instructions:
    os.makedirs(os.path.join(out_dir, "llava"), exist_ok=True)
    for split, items in described.items():
      rows = [instructions_lib.video_row(i, path, specs, s_inst) if video
              else instructions_lib.image_row(i, path, specs[0], s_inst) for video, i, path, specs in items]
      if knowledge and split == "train":
        rows += knowledge_lib.knowledge_rows(s_know)
      writers.write_json(rows, os.path.join(out_dir, "llava", f"{split}.json"))
      conversations.append({"source": "llava_json", "split": split, "path": f"llava/{split}.json",
                            "count": len(rows), "media_root": "."})

  labels: list[dict[str, Any]] = []
  if knowledge:
    by_id = {r["record_id"]: r for r in latent_rows}
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    for split, items in described.items():
      rows = [q for video, i, path, _ in items
              for q in knowledge_lib.label_rows(i, "video" if video else "image", path, by_id[i])]
      writers.write_json(rows, os.path.join(out_dir, "labels", f"{split}.json"))
      labels.append({"source": "llava_json", "split": split, "path": f"labels/{split}.json", "count": len(rows),
                     "media_root": "."})

  writers.write_jsonl(latent_rows, os.path.join(out_dir, LATENT_FILE))
  manifest = {"generator": GENERATOR_VERSION, "seed": seed, "image_size": media_size or IMAGE_SIZE,
              "size": size if counts == SIZES[size] else "custom",
              "files": files, "instructions": conversations, "latent": LATENT_FILE, "total_records": total,
              "latent_labels": {"tone": list(TONES), "topic": list(TOPICS), "memorability": "integer 0-99"}}
  if knowledge:   # only then, as below
    manifest["label_questions"] = labels
  if scene_range != (MIN_SCENES, MAX_SCENES):   # only then: the default manifest stays byte for byte
    manifest["scenes_per_video"] = list(scene_range)
  writers.write_manifest(out_dir, manifest)
  writers.write_readme(out_dir, seed, size, total, files + conversations)
  return manifest
