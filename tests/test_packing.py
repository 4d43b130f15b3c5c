"""Packing: samples never see each other, loss only on targets, packed == unpacked through the model."""
import re

import jax
import numpy as np
import pytest

import pipeline_helpers as helpers
from data_pipeline import batch as batch_lib
from data_pipeline import pipeline
from data_pipeline.tokenizer import Tokenizer
from lcbm_jax import cli
from lcbm_jax.model import attention, lcbm, presets

SEQ = 768


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return helpers.build_tiny(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def packed_and_unpacked(tiny):
  data_dir, tok = tiny
  packed = list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=SEQ, batch_size=2)))
  unpacked = list(pipeline.make_iterator(helpers.config(data_dir, tok, seq_len=SEQ, batch_size=2, pack=False)))
  return packed, unpacked


def _segments(batches):
  """sample_id -> dict of that sample's slices (tokens, targets, loss, positions, images), from any layout."""
  out = {}
  for b in batches:
    for r in range(b["input_ids"].shape[0]):
      seg, slot, row_images = b["segment_ids"][r], 0, batch_lib.row_images(b, r, 16)
      for s in range(1, seg.max() + 1):
        idx = np.flatnonzero(seg == s)
        ids = b["input_ids"][r, idx]
        n_img = int((ids == 4).sum()) // 16   # <image> is id 4, 16 ids each (helpers.config)
        out[int(b["sample_ids"][r, s - 1])] = dict(
            idx=idx, row=r, batch=b, input_ids=ids, targets=b["targets"][r, idx], loss=b["loss_mask"][r, idx],
            positions=b["positions"][r, idx], task=b["task_ids"][r, idx],
            images=row_images[slot:slot + n_img])
        slot += n_img
  return out


def test_packed_segments_equal_unpacked_rows(packed_and_unpacked):
  packed, unpacked = packed_and_unpacked
  a, b = _segments(packed), _segments(unpacked)
  assert set(a) == set(b) and len(a) == 40
  assert len(packed) < len(unpacked)
  for sid in a:
    for key in ("input_ids", "targets", "loss", "positions", "task", "images"):
      np.testing.assert_array_equal(a[sid][key], b[sid][key], err_msg=key)
    assert np.all(np.diff(a[sid]["idx"]) == 1)                        # contiguous
    np.testing.assert_array_equal(a[sid]["positions"], np.arange(len(a[sid]["idx"])))


def test_targets_are_next_token_within_segment_and_loss_only_on_targets(tiny, packed_and_unpacked):
  data_dir, tok_dir = tiny
  tok = Tokenizer.load(tok_dir)
  cfg = helpers.config(data_dir, tok_dir, seq_len=SEQ, batch_size=2)
  elems = {e["sample_id"]: e for e in pipeline.text_only_epoch(cfg, pipeline.Corpus(data_dir, "train"), tok, 0, 0)}
  segs = _segments(packed_and_unpacked[0])
  for sid, s in segs.items():
    ids, targets, loss = s["input_ids"], s["targets"], s["loss"]
    np.testing.assert_array_equal(targets[:-1], ids[1:])
    assert targets[-1] == 0 and loss[-1] == 0                          # nothing predicted across the boundary
    v = elems[sid]["verbalized"]
    predicted = targets[loss == 1]
    assert predicted[-1] == tok.eos_id
    assert tok.decode(predicted[:-1]) == v.target                      # exactly the target text, nothing else
    assert not np.any(loss[:-1][ids[1:] == tok.image_id])              # image tokens never carry loss
  b = packed_and_unpacked[0][0]
  pad = b["segment_ids"] == 0
  assert np.all(b["loss_mask"][pad] == 0) and np.all(b["task_ids"][pad] == -1) and np.all(b["targets"][pad] == 0)


def test_mask_built_from_segment_ids_never_crosses_samples(packed_and_unpacked):
  for b in packed_and_unpacked[0]:
    seg = jax.numpy.asarray(b["segment_ids"])
    slots = jax.numpy.arange(seg.shape[1])
    mask = np.asarray(attention.segment_mask(seg, seg, slots[None, :], slots))
    segs = b["segment_ids"]
    q_sample = np.where(segs > 0, np.take_along_axis(b["sample_ids"], np.maximum(segs - 1, 0), 1), -1)
    r, q, k = np.nonzero(mask)
    assert np.all(q_sample[r, q] == q_sample[r, k]) and np.all(q_sample[r, q] >= 0)
    # And inside a sample every earlier token is visible (causal, nothing lost).
    for row in range(segs.shape[0]):
      for s in range(1, segs[row].max() + 1):
        idx = np.flatnonzero(segs[row] == s)
        block = mask[row][np.ix_(idx, idx)]
        np.testing.assert_array_equal(block, np.tril(np.ones_like(block)))


def test_model_logits_of_packed_rows_equal_unpacked(packed_and_unpacked):
  cfg = presets.get("tiny")
  assert cfg.num_image_tokens == 16 and cfg.image_token_id == 4 and cfg.vision.image_size == 32
  params = lcbm.init_params(cfg, jax.random.PRNGKey(0))
  model = lcbm.LCBM(cfg)
  fwd = jax.jit(lambda b: model.apply({"params": params}, b["input_ids"], b["images"], b["segment_ids"],
                                      b["positions"], image_index=b["image_index"]))
  packed, unpacked = packed_and_unpacked
  row_batch = next(b for b in packed if (b["sample_ids"][0] >= 0).sum() >= 3)   # a row holding 3+ samples
  a = _segments([row_batch])
  b = _segments(unpacked)
  logits_packed = np.asarray(fwd(row_batch))
  checked = 0
  for sid, s in a.items():
    if s["row"] != 0:
      continue
    ub = b[sid]["batch"]
    logits_single = np.asarray(fwd(ub))
    np.testing.assert_allclose(logits_packed[0, s["idx"]], logits_single[b[sid]["row"], b[sid]["idx"]],
                               atol=2e-4, rtol=2e-4)
    checked += 1
  assert checked >= 3


def test_packer_limits():
  p = pipeline.Packer(seq_len=10, max_segments=3, rows=1, images=2)   # a group of one row: a row's limits
  e = lambda n, m=0: {"tokens": np.zeros(n), "n_images": m}
  assert p.add(e(4)) is None and p.add(e(6)) is None                # exactly full
  (row,) = p.add(e(1))
  assert len(row) == 2                                               # tokens overflow closes the row
  assert p.add(e(1, 2)) is None and [len(r) for r in p.add(e(1, 1))] == [2]   # image slots overflow
  assert p.add(e(1)) is None and p.add(e(1)) is None and [len(r) for r in p.add(e(1))] == [3]   # segment limit
  assert [len(r) for r in p.flush()] == [1] and p.flush() is None


def test_packer_two_budgets_tokens_per_row_images_per_group():
  p = pipeline.Packer(seq_len=10, max_segments=4, rows=2, images=3)
  e = lambda n, m=0: {"tokens": np.zeros(n), "n_images": m}
  # Tokens overflow on the group's first row opens its second row; images are counted over both.
  assert p.add(e(6, 1)) is None and p.add(e(6, 1)) is None and len(p.group) == 2
  # One more image fits the group's budget of 3, a second would not: the group closes with both rows.
  assert p.add(e(2, 1)) is None
  closed = p.add(e(1, 1))
  assert [len(r) for r in closed] == [1, 2] and sum(x["n_images"] for r in closed for x in r) == 3
  # Tokens overflow on the last row closes the group, text-only samples included.
  assert p.add(e(9)) is None and p.add(e(9)) is None
  assert [len(r) for r in p.add(e(9))] == [2, 1] and p.first["tokens"].size == 9


def test_inspect_prints_packing_efficiency(tiny, capsys, tmp_path):
  data_dir, tok = tiny
  png = tmp_path / "lengths.png"
  assert cli.main(["data", "inspect", data_dir, "--tokenizer", tok, "--seq-len", str(SEQ), "--png", str(png)]) == 0
  out = capsys.readouterr().out
  assert png.read_bytes()[:4] == b"\x89PNG"
  for task in ("behavior_simulation", "kbft", "blift", "likes_high_low"):
    assert f"--- {task} (" in out
  assert "== token lengths" in out and "#" in out and "quarantine: none" in out
  match = re.search(r"packed: (\d+) samples -> (\d+) rows, efficiency ([\d.]+)%", out)
  assert match, out
  # The same figure from the batch iterator (seed 0, all tasks, one row per batch: no padding rows).
  cfg = helpers.config(data_dir, tok, seq_len=SEQ, batch_size=1, seed=0)
  it = pipeline.make_iterator(cfg)
  rows = sum(1 for _ in it)
  assert int(match.group(2)) == rows
  assert abs(float(match.group(3)) - 100 * it.packing_efficiency) < 0.05
