"""The hidden labels of a generated corpus (latent.jsonl): finding the file and reading it.

Evaluation-only: tone, topic and memorability per record_id, written by the generator and never
put into a verbalization.
"""
from __future__ import annotations

import json
import os
from typing import Any

LATENT_FILE = "latent.jsonl"


def find_latent(data_dir: str) -> str | None:
  """latent.jsonl of the generated corpus: in data_dir, or in a sibling directory of it."""
  here = os.path.abspath(data_dir)
  candidates = [os.path.join(here, LATENT_FILE)]
  parent = os.path.dirname(here)
  if os.path.isdir(parent):
    candidates += [os.path.join(parent, d, LATENT_FILE) for d in sorted(os.listdir(parent))]
  return next((c for c in candidates if os.path.isfile(c)), None)


def load_latent(path: str | None) -> dict[str, dict[str, Any]]:
  """record_id -> its latent.jsonl row (record_id, source, split, tone, topic, memorability);
  {} when `path` is None (no generated corpus: the zero-shot tasks produce no rows)."""
  if path is None:
    return {}
  out = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        out[row["record_id"]] = row
  return out
