"""Reader of a generated embedded corpus (`data_pipeline.world`): every file its manifest lists.

  lcbm data generate --out /tmp/bw
  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built

Each listed file goes through its own public-schema reader (cbc, blift, tweets, and llava_json for
the instruction rows about the corpus's media); the hidden labels of latent.jsonl are attached only
on request, for evaluation.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, NamedTuple

from data_pipeline import records as rec
from data_pipeline import sources, world
from lcbm_jax import paths
from lcbm_jax.errors import UserError


def load_manifest(corpus_dir: str) -> dict[str, Any]:
  path = paths.join(corpus_dir, world.MANIFEST_FILE)
  if not paths.exists(path):
    raise UserError(f"{corpus_dir} has no manifest.json; generate one with `lcbm data generate --out {corpus_dir}`")
  with paths.open_read(path) as f:
    return json.load(f)


class Entry(NamedTuple):
  source: str        # reader name (sources.SOURCES)
  split: str
  file: str
  media_root: str    # where the file's relative media paths resolve
  count: int


def entries(corpus_dir: str, media_root: str | None = None) -> list[Entry]:
  """Every data file a generated corpus lists: its behavior files, then its instruction files
  (whose media paths are relative to the manifest's `media_root`, the corpus directory)."""
  manifest = load_manifest(corpus_dir)
  out = []
  for e in manifest["files"] + manifest.get("instructions", []):   # corpora before v3 have no instructions
    file = paths.join(corpus_dir, e["path"])
    root = media_root or rec.ImplicitRoot(paths.normpath(
        paths.join(corpus_dir, e["media_root"]) if "media_root" in e else paths.dirname(file)))
    out.append(Entry(e["source"], e["split"], file, root, e["count"]))
  return out


def read(path: str, media_root: str | None = None, *, split: str | None = None, source: str | None = None,
         with_latent: bool = False) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Every record of a generated corpus through the public-schema readers (optionally one split/source).
  `with_latent=True` attaches the hidden labels (source, split, tone, topic, memorability) as
  `record.latent` (evaluation only); an instruction row gets the labels of the item it is about
  (its id is that item's record id)."""
  manifest = load_manifest(path)
  latent = world.load_latent(os.path.join(path, manifest["latent"])) if with_latent else {}
  for entry in entries(path, media_root):
    if (split is not None and entry.split != split) or (source is not None and entry.source != source):
      continue
    for r in sources.read(entry.source, entry.file, entry.media_root):
      if with_latent and isinstance(r, rec.ContentBehaviorRecord) and r.record_id in latent:
        labels = {k: v for k, v in latent[r.record_id].items() if k != "record_id"}
        r = dataclasses.replace(r, latent=labels)
      yield r

