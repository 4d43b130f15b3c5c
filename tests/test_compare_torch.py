"""`lcbm bench train --compare-torch`: the same weights give the same step-0 loss in transformers before
anything is timed, with the vision tower frozen on both sides."""
import pytest

from lcbm_jax.training import bench_torch


def test_same_step_zero_loss_then_both_sides_timed():
  r = bench_torch.compare("tiny", batch_size=2, seq_len=64, steps=1, frozen=True, threads=1)
  assert r["frozen"] and r["threads"] == 1
  assert r["ours_loss"] == pytest.approx(r["torch_loss"], abs=bench_torch.LOSS_TOLERANCE)
  assert r["ours_s"] > 0 and r["torch_s"] > 0
  assert r["ratio"] == pytest.approx(r["torch_s"] / r["ours_s"])
  assert "vision frozen" in bench_torch.format_result(r)
