"""Writing the generated corpus' files: CBC parquet, JSON lines (BLIFT, tweets, latent), LLaVA JSON, media,
manifest, README."""
from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_FILE = "manifest.json"


def _cbc_schema() -> pa.Schema:
  f64, s = pa.float64(), pa.string()
  return pa.schema([
      ("video_id", s),
      ("asr_raw", pa.list_(pa.struct([("start", f64), ("end", f64), ("text", s), ("words", pa.list_(
          pa.struct([("confidence", f64), ("start", f64), ("end", f64), ("text", s)])))]))),
      ("asr_grouped", pa.list_(pa.list_(s))),
      ("ocr", pa.list_(pa.list_(s))),
      ("blip2_annotations", pa.struct([("actions", pa.list_(s)), ("captions", pa.list_(s)),
                                       ("objects", pa.list_(s))])),
      ("replay_graphs", pa.struct([("original_marker_duration", f64), ("processed_marker_duration", f64),
                                   ("multiplier", f64), ("markers", pa.list_(pa.struct(
                                       [("start", f64), ("end", f64), ("replay_score", f64)])))])),
      ("likes", f64), ("views", f64),
      ("metadata", pa.struct([("title", s), ("description", s), ("length", f64), ("date", s)])),
      ("channel_data", pa.struct([("channel_id", s), ("company_name", s), ("subscribers", f64)])),
      ("media_path", s),
  ])


def write_cbc_parquet(rows: list[dict[str, Any]], path: str) -> None:
  """Writes CBC rows with the public schema (plus the optional `media_path` column)."""
  pq.write_table(pa.Table.from_pylist(rows, schema=_cbc_schema()), path)


def write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")


def write_json(rows: list[dict[str, Any]], path: str) -> None:
  """One JSON list, a row per line (LLaVA's files are one list; this layout keeps them diffable)."""
  with open(path, "w", encoding="utf-8") as f:
    f.write("[\n" + ",\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows) + "\n]\n")


def write_bytes(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
  with open(os.path.join(out, MANIFEST_FILE), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")


def write_readme(out: str, seed: int, size: str, total: int, files: list[dict[str, Any]]) -> None:
  """DIR/README.md: what was generated, one table row per data file of the manifest."""
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(_README.format(seed=seed, size=size, total=total,
                           table="\n".join(f"| {e['path']} | {e['source']} | {e['split']} | {e['count']} |"
                                           for e in files)))


_README = """# Embedded behavior corpus (generated; seed {seed}, size {size}, {total} records)

Written by `lcbm data generate` from a hidden audience model; see the README's data section.

| file | source reader | split | records |
|---|---|---|---|
{table}

Media lie under each source's `media/` folder; `llava/*.json` (source `llava_json`), when listed,
holds LLaVA conversations about the videos' and posts' media, paths relative to this directory.
`latent.jsonl` holds hidden evaluation labels (tone, topic, memorability) keyed by record_id:
never train on them.
"""
