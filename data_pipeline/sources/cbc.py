"""Content Behavior Corpus reader (LCBM's YouTube part, parquet): one video per row.

Columns (PAPERS.md §3): video_id, asr_raw, asr_grouped, ocr, blip2_annotations {actions, captions,
objects}, replay_graphs {original_marker_duration, processed_marker_duration, multiplier,
markers [{start, end, replay_score}]}, likes, views, metadata {title, description, length, date},
channel_data {channel_id, company_name, subscribers}. Optional extension: `media_path` (the video as
a multi-frame image file, one keyframe per scene, relative to the media root).

Scenes come from the replay markers (LCBM): adjacent markers merge until a segment spans >= 1 s;
a segment's value is the max of its markers; a short tail joins the previous segment. Marker
times are seconds; scores in 0-1 are scaled to 0-100, then rounded to integers. Per-scene texts
(asr_grouped, ocr, blip2 captions) map onto segments by index when the counts agree, else
proportionally (group j -> segment j * segments // groups).
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterator, Sequence

from data_pipeline import records as rec
from data_pipeline import sources
from lcbm_jax import paths

SOURCE = "cbc"
MIN_SEGMENT_S = 1.0


def merge_markers(markers: Sequence[dict[str, Any]]) -> list[tuple[float, float, int]]:
  """Replay markers -> [(start, end, replay 0-100 int)] segments of >= 1 s; RecordError on bad values."""
  parsed = []
  for i, m in enumerate(markers):
    if not isinstance(m, dict):
      raise rec.RecordError("wrong_type", f"markers[{i}] is {type(m).__name__}")
    vals = []
    for key in ("start", "end", "replay_score"):
      v = m.get(key)
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise rec.RecordError("wrong_type" if v is not None else "missing_field", f"markers[{i}].{key}={v!r:.30}")
      if not math.isfinite(v):
        raise rec.RecordError("non_finite", f"markers[{i}].{key}={v}")
      vals.append(float(v))
    start, end, score = vals
    if end < start or start < 0:
      raise rec.RecordError("out_of_range", f"markers[{i}] spans {start}..{end}")
    if score < 0:
      raise rec.RecordError("out_of_range", f"markers[{i}].replay_score={score}")
    parsed.append((start, end, score))
  if not parsed:
    return []
  parsed.sort()
  scale = 100.0 if max(p[2] for p in parsed) <= 1.0 else 1.0
  top = max(p[2] for p in parsed) * scale
  if top > 100.0:
    raise rec.RecordError("out_of_range", f"replay_score {top:g} is above 100 (scores are 0-1 or 0-100)")
  segments: list[list[float]] = []
  cur: list[float] | None = None
  for start, end, score in parsed:
    if cur is None:
      cur = [start, end, score]
    else:
      cur[1], cur[2] = end, max(cur[2], score)
    if cur[1] - cur[0] >= MIN_SEGMENT_S - 1e-9:
      segments.append(cur)
      cur = None
  if cur is not None:
    if segments:   # a tail shorter than 1 s joins the previous segment
      segments[-1][1], segments[-1][2] = cur[1], max(segments[-1][2], cur[2])
    else:
      segments.append(cur)
  return [(s, e, int(min(100, max(0, math.floor(v * scale + 0.5))))) for s, e, v in segments]


def _groups(value: Any, field: str) -> list[str]:
  """Per-scene text groups: list of (list of str | str) -> one string per group."""
  if value is None:
    return []
  if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
    raise rec.RecordError("wrong_type", f"{field} is {type(value).__name__}, expected a list per scene")
  out = []
  for i, g in enumerate(value):
    if g is None or isinstance(g, (str, bytes)):
      out.append(rec.as_text(g, f"{field}[{i}]"))
    else:
      out.append(" ".join(t for t in rec.as_text_list(g, f"{field}[{i}]") if t.strip()))
  return out


def _assign(groups: list[str], n: int) -> list[str]:
  if not groups or n == 0:
    return [""] * n
  if len(groups) == n:
    return groups
  out: list[list[str]] = [[] for _ in range(n)]
  for j, g in enumerate(groups):
    if g:
      out[min(n - 1, j * n // len(groups))].append(g)
  return [" ".join(x) for x in out]


def record_from_row(row: dict[str, Any]) -> rec.ContentBehaviorRecord:
  vid = rec.as_text(row.get("video_id"), "video_id", required=True)
  graphs = rec.as_mapping(row.get("replay_graphs"), "replay_graphs")
  markers = graphs.get("markers") or []
  if not isinstance(markers, list):
    raise rec.RecordError("wrong_type", "replay_graphs.markers is not a list")
  segments = merge_markers(markers)
  blip = rec.as_mapping(row.get("blip2_annotations"), "blip2_annotations")
  asr, ocr, caps = (_groups(row.get("asr_grouped"), "asr_grouped"), _groups(row.get("ocr"), "ocr"),
                    _groups(blip.get("captions"), "blip2_annotations.captions"))
  objects = _groups(blip.get("objects"), "blip2_annotations.objects")
  n = len(segments) or max(len(asr), len(ocr), len(caps))
  asr, ocr, caps = _assign(asr, n), _assign(ocr, n), _assign(caps, n)
  scenes = tuple(rec.Scene(asr=asr[i], ocr=ocr[i], captions=(caps[i],) if caps[i] else (),
                           start=segments[i][0] if segments else 0.0, end=segments[i][1] if segments else 0.0)
                 for i in range(n))
  meta = rec.as_mapping(row.get("metadata"), "metadata")
  chan = rec.as_mapping(row.get("channel_data"), "channel_data")
  subs = rec.as_count(chan.get("subscribers"), "subscribers")
  media_path = rec.as_text(row.get("media_path"), "media_path")
  return rec.ContentBehaviorRecord(
      record_id=vid, source=SOURCE,
      content=rec.Content(title=rec.as_text(meta.get("title"), "title"),
                          description=rec.as_text(meta.get("description"), "description"),
                          media=(rec.MediaRef(media_path, "video"),) if media_path else (), scenes=scenes,
                          keywords=tuple(dict.fromkeys(o for o in objects if o.strip()))),
      communicator=rec.Communicator(account=rec.as_text(chan.get("channel_id"), "channel_id"),
                                    brand=rec.as_text(chan.get("company_name"), "company_name"),
                                    followers=None if subs is None else int(subs)),
      time=rec.as_date(meta.get("date"), "date"),
      behavior=rec.Behavior(likes=rec.as_count(row.get("likes"), "likes"),
                            views=rec.as_count(row.get("views"), "views"),
                            replay=tuple(float(v) for _, _, v in segments) if segments else None))


def read(path: str, media_root: str | None = None) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Records from a CBC parquet file (or every *.parquet in a folder), read in row batches."""
  import pyarrow.parquet as pq   # here: only CBC reads parquet, and pyarrow costs a second to import
  for file in sources.files_in(path, (".parquet",)):
    root = sources.default_media_root(file, media_root)
    name = os.path.basename(file)
    handle = None   # pyarrow opens a local file itself; an object (gs://) comes as a stream
    try:
      handle = paths.open_read(file) if paths.is_remote(file) else None
      pf = pq.ParquetFile(handle or file)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
      if handle is not None:
        handle.close()
      yield rec.Quarantined(name, SOURCE, "unreadable_file", f"{type(e).__name__}: {e}"[:300], file)
      continue
    try:
      row_index = 0
      for batch in pf.iter_batches(batch_size=256):
        for row in batch.to_pylist():
          location = f"{file}:{row_index}"
          vid = row.get("video_id")
          rid = vid if isinstance(vid, str) and vid else f"{name}:{row_index}"
          row_index += 1
          yield sources.convert(lambda: record_from_row(row), rid, SOURCE, location, root, row=row)
    finally:
      if handle is not None:
        handle.close()
