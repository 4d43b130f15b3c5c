"""Reader of a generated embedded corpus (`data_pipeline.world`): every file its manifest lists.

  lcbm data generate --out /tmp/bw
  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built

Each listed file goes through its own public-schema reader (cbc, blift, tweets); the hidden labels
of latent.jsonl are attached only on request, for evaluation.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

from data_pipeline import records as rec
from data_pipeline import sources, world
from lcbm_jax.errors import UserError


def load_manifest(corpus_dir: str) -> dict[str, Any]:
  path = os.path.join(corpus_dir, world.MANIFEST_FILE)
  if not os.path.exists(path):
    raise UserError(f"{corpus_dir} has no manifest.json; generate one with `lcbm data generate --out {corpus_dir}`")
  with open(path) as f:
    return json.load(f)


def read(path: str, media_root: str | None = None, *, split: str | None = None, source: str | None = None,
         with_latent: bool = False) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Every record of a generated corpus through the public-schema readers (optionally one split/source).
  `with_latent=True` attaches the hidden labels (source, split, tone, topic, memorability) as
  `record.latent` (evaluation only)."""
  manifest = load_manifest(path)
  latent = world.load_latent(os.path.join(path, manifest["latent"])) if with_latent else {}
  for entry in manifest["files"]:
    if (split is not None and entry["split"] != split) or (source is not None and entry["source"] != source):
      continue
    file = os.path.join(path, entry["path"])
    root = media_root or os.path.dirname(file)
    for r in sources.read(entry["source"], file, root):
      if with_latent and isinstance(r, rec.ContentBehaviorRecord) and r.record_id in latent:
        labels = {k: v for k, v in latent[r.record_id].items() if k != "record_id"}
        r = dataclasses.replace(r, latent=labels)
      yield r

