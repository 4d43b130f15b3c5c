"""Grain pipeline: quarantine accounting with 0 and 2 workers, exact resume, process sharding, eval path."""
import dataclasses
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import corrupt_corpus
import pipeline_helpers as helpers
from data_pipeline import commands, pipeline, verbalize
from data_pipeline.tfds_builders import builder as builder_lib
from data_pipeline.codec import Codec
from data_pipeline.tokenizer import Tokenizer
from lcbm_jax.errors import UserError
from lcbm_jax.model.presets import CLIP_MEAN, CLIP_STD

N_DECODE_BAD = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return helpers.build_tiny(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
  """H3's corrupted corpus, built, plus records whose media bytes only fail when decoded in a worker."""
  root = tmp_path_factory.mktemp("corrupt")
  corrupt = corrupt_corpus.write_corrupted_corpus(str(root / "gen"))
  data_dir = str(root / "built")
  commands.build_corpus("behavior_world", corrupt.root, data_dir)
  cbc = pipeline.Corpus(os.path.join(data_dir, "cbc"), "train")
  bad = []
  for i in range(N_DECODE_BAD):   # clean-looking records whose bytes are garbage: validation never saw them
    r = cbc[i]
    media = tuple(dataclasses.replace(m, data=b"\x89PNG garbage") for m in r.content.media)
    bad.append(dataclasses.replace(r, record_id=f"decode-bad-{i}", source="jsonl",
                                   content=dataclasses.replace(r.content, media=media)))
  builder_lib.build(builder_lib.builder_class("jsonl"), {"train": builder_lib.SplitInput(lambda: bad, None)},
                    data_dir, "decode-bad records")
  tok = helpers.train_tokenizer(data_dir, str(root / "tok"))
  expected = dict(corrupt.expected)
  expected["corrupt_media"] = expected.get("corrupt_media", 0) + N_DECODE_BAD
  return data_dir, tok, expected, corrupt.clean_ids


def _sample_ids(batches):
  ids = np.concatenate([b["sample_ids"].ravel() for b in batches])
  return ids[ids >= 0]


def _record_of(sample_ids, record_ids, epoch=0):
  table = {pipeline.sample_id(r, t, epoch): r for r in record_ids for t in verbalize.TASKS}
  return [table[int(s)] for s in sample_ids]


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupted_corpus_counts_and_no_clean_record_lost(corrupted, workers):
  data_dir, tok, expected, clean_ids = corrupted
  cfg = helpers.config(data_dir, tok, seq_len=1024, worker_count=workers)
  it = pipeline.make_iterator(cfg)
  batches = list(it)
  assert it.quarantine_totals() == expected
  assert it.quarantine_counts == {"corrupt_media": N_DECODE_BAD}   # the decode-time part, counted in the main process
  ids = _sample_ids(batches)
  assert len(ids) == len(set(ids.tolist())) == len(clean_ids)
  assert set(_record_of(ids, clean_ids)) == set(clean_ids)


def test_workers_do_not_change_batches(tiny):
  data_dir, tok = tiny
  runs = [list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=1024, worker_count=w))) for w in (0, 2)]
  assert len(runs[0]) == len(runs[1])
  for a, b in zip(*runs):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("stop_fraction", [0.05, 0.3, 0.8])
def test_resume_mid_epoch_is_exact(tiny, stop_fraction):
  data_dir, tok = tiny
  cfg = helpers.config(data_dir, tok, seq_len=768, batch_size=2, num_epochs=2)
  full = list(pipeline.make_iterator(cfg))
  it = pipeline.make_iterator(cfg)
  head = [next(it) for _ in range(max(1, int(stop_fraction * len(full))))]
  state = json.loads(json.dumps(it.get_state()))   # what the checkpoint stores
  assert state["epoch"] == (stop_fraction > 0.5)   # stops inside epoch 0 and inside epoch 1
  resumed = pipeline.make_iterator(cfg, state=state)
  _assert_same(head + list(resumed), full)


def test_resume_with_workers_and_epoch_boundary(tiny):
  data_dir, tok = tiny
  cfg = helpers.config(data_dir, tok, seq_len=768, batch_size=2, num_epochs=2, worker_count=2)
  full = list(pipeline.make_iterator(dataclasses.replace(cfg, worker_count=0)))
  it = pipeline.make_iterator(cfg)
  per_epoch = it.epoch_size
  head = []
  while it.get_state()["next_k"] < per_epoch:   # stop right at the epoch boundary
    head.append(next(it))
  state = it.get_state()
  it.close()
  resumed = pipeline.make_iterator(cfg, state=state)
  _assert_same(head + list(resumed), full)


@pytest.mark.parametrize("pack", [True, False])
def test_two_processes_see_every_sample_once_with_equal_batch_counts(tiny, pack):
  data_dir, tok = tiny
  seen, counts = [], []
  for p in (0, 1):
    cfg = helpers.config(data_dir, tok, seq_len=1024, batch_size=4, process_count=2, process_index=p,
                         pack=pack, num_epochs=2)
    it = pipeline.make_iterator(cfg)
    batches = list(it)
    counts.append(len(batches))
    assert all(b["input_ids"].shape == (2, 1024) for b in batches)
    seen.append(batches)
  assert counts[0] == counts[1]
  corpus = pipeline.Corpus(data_dir, "train")
  all_ids = [corpus[i].record_id for i in range(len(corpus))]
  for epoch in (0, 1):
    per_process = []
    for batches in seen:
      ids = [int(s) for s in _sample_ids(batches)]
      table = {pipeline.sample_id(r, t, epoch): r for r in all_ids for t in verbalize.TASKS}
      per_process.append([table[s] for s in ids if s in table])
    assert not set(per_process[0]) & set(per_process[1])
    assert sorted(per_process[0] + per_process[1]) == sorted(all_ids)


def test_deterministic_for_a_seed(tiny):
  data_dir, tok = tiny
  a = list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=1024)))
  b = list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=1024)))
  c = list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=1024, seed=4)))
  _assert_same(a, b)
  assert not np.array_equal(_sample_ids(a), _sample_ids(c))


def test_task_mixture_follows_weights(tiny):
  data_dir, tok = tiny
  # Only cbc records take behavior_simulation; tweets only take tweet_generation / likes_high_low.
  tasks = (("behavior_simulation", 1.0), ("kbft", 3.0), ("tweet_generation", 1.0))
  cfg = helpers.config(data_dir, tok, seq_len=1024, tasks=tasks, num_epochs=20)
  task_counts = np.zeros(3)
  for b in pipeline.make_iterator(cfg):
    for row_tasks, row_segs in zip(b["task_ids"], b["segment_ids"]):
      for s in np.unique(row_segs[row_segs > 0]):
        task_counts[row_tasks[row_segs == s][0]] += 1
  video = task_counts[0] + task_counts[1]
  assert 0.6 < task_counts[1] / video < 0.9   # 3:1 on videos, 200 draws
  assert task_counts[2] > 0


def test_bad_config_fails_before_anything_runs(tiny, tmp_path):
  data_dir, tok = tiny
  bad = [dict(tasks=(("no_such_task", 1.0),)), dict(tasks=(("kbft", 0.0),)), dict(batch_size=3, process_count=2),
         dict(seq_len=32), dict(process_index=2, process_count=2), dict(num_epochs=0),
         dict(data_dir=str(tmp_path / "missing")), dict(tokenizer=str(tmp_path / "missing")), dict(split="nope")]
  for overrides in bad:
    with pytest.raises(UserError):
      pipeline.make_iterator(dataclasses.replace(helpers.config(data_dir, tok), **overrides))
  with pytest.raises(UserError):
    pipeline.Verbalize((("nope", 1.0),), verbalize.Context(), 0, 4, False)


def test_no_usable_sample_is_an_error_not_a_hang(tiny):
  # Every video sample is longer than 96 tokens: an endless stream would otherwise never yield.
  data_dir, tok = tiny
  cfg = helpers.config(data_dir, tok, seq_len=96, max_images=1, tasks=(("behavior_simulation", 1.0),),
                       num_epochs=None)
  with pytest.raises(UserError, match=r"no usable sample.*too_long \d+"):
    next(pipeline.make_iterator(cfg))


def test_make_global_shards_the_batch():
  import jax
  from lcbm_jax import sharding
  mesh = sharding.make_mesh(data=4, fsdp=2)
  cfg = pipeline.PipelineConfig(data_dir="", tokenizer="", seq_len=64, batch_size=8, image_size=8, max_images=1,
                                num_image_tokens=4, image_groups=8)   # one image group per data shard
  batch = pipeline.assemble([], cfg, pad_id=3, image_id=4)
  g = sharding.make_global(batch, mesh)
  assert isinstance(g["input_ids"], jax.Array) and g["input_ids"].shape == (8, 64)
  assert len(g["images"].sharding.device_set) == 8
  assert isinstance(g["sample_ids"], np.ndarray) and g["sample_ids"].dtype == np.int64
  np.testing.assert_array_equal(np.asarray(g["input_ids"]), batch["input_ids"])


def test_clip_preprocessing_matches_transformers(tmp_path):
  from transformers.models.clip import image_processing_pil_clip as hf_clip
  rng = np.random.default_rng(0)
  for w, h in ((64, 48), (40, 90), (33, 33)):
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    ours = pipeline.decode_image(buf.getvalue(), 0, 32, CLIP_MEAN, CLIP_STD)
    proc = hf_clip.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref = np.asarray(proc(img, return_tensors="np")["pixel_values"][0]).transpose(1, 2, 0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_video_keyframes_follow_frame_indices(tmp_path):
  frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(5)]
  buf = io.BytesIO()
  frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
  for i in (0, 2, 4):
    x = pipeline.decode_image(buf.getvalue(), i, 8, CLIP_MEAN, CLIP_STD)
    red = x[..., 0] * CLIP_STD[0] + CLIP_MEAN[0]
    assert abs(red.mean() * 255 - 40 * i) < 3
  with pytest.raises(Exception) as e:
    pipeline.decode_image(buf.getvalue(), 9, 8, CLIP_MEAN, CLIP_STD)
  assert getattr(e.value, "reason", None) == "corrupt_media"


def test_eval_examples_prefix_matches_training(tiny):
  data_dir, tok_dir = tiny
  tok = Tokenizer.load(tok_dir)
  examples = list(pipeline.eval_examples(data_dir, "test", "behavior_simulation", codec=Codec(tok, 16),
                                         image_mean=CLIP_MEAN, image_std=CLIP_STD, image_size=32,
                                         max_images=4, max_examples=3))
  assert len(examples) == 3
  for ex in examples:
    v = ex.verbalized
    assert ex.images.shape == (len(v.media), 32, 32, 3)
    assert int((ex.prompt_ids == tok.image_id).sum()) == 16 * len(v.media)
    assert ex.prompt_ids[0] == tok.bos_id and ex.target_ids[-1] == tok.eos_id
    full = tok.encode(v.text)
    collapsed, run = [], 0
    for i in ex.prompt_ids[1:].tolist():   # undo the expansion: one <image> id per 16
      run = run + 1 if i == tok.image_id else 0
      if i != tok.image_id or run % 16 == 1:
        collapsed.append(i)
    assert collapsed + ex.target_ids[:-1].tolist() == full
    assert tok.decode(ex.target_ids).strip() == v.target.strip()
    assert ex.answer["replay"]


def test_bench_data_prints_samples_per_second_side_by_side(tiny, capsys):
  from lcbm_jax import cli
  data_dir, _ = tiny
  assert cli.main(["bench", "data", "--data", data_dir, "--workers", "0", "2", "--batches", "2",
                   "--image-size", "32"]) == 0
  rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["0"], ["2"])]
  assert [r[0] for r in rows] == ["0", "2"]
  assert rows[0][2] == "1.00x" and float(rows[1][1]) > 0
  assert rows[0][3] == rows[1][3]   # both worker counts processed the same samples
