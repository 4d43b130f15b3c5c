"""`lcbm bench decode`: the benchmark refuses to time two computations that differ, and reports both sides."""
import pytest

from lcbm_jax import inference_bench
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets


def test_greedy_ids_equal_transformers_then_timed():
  r = inference_bench.compare("tiny", batch_size=3, prompt_len=7, new_tokens=12, repeats=1, threads=1)
  assert r["ids_equal"] and r["new_tokens"] == 12 and r["batch_size"] == 3
  assert r["prompt_len"] == 1 + presets.get("tiny").num_image_tokens + 7
  assert r["ours_tokens_per_s"] > 0 and r["torch_tokens_per_s"] > 0
  assert r["ratio"] == pytest.approx(r["torch_s"] / r["ours_s"])
  assert "ids equal" in inference_bench.format_result(r)


def test_a_different_computation_is_refused(monkeypatch):
  """If our decoder drifts from transformers' (here: every generated id shifted by one), nothing is timed."""
  real = inference_bench.inference.generate

  def drifted(*args, **kwargs):
    return [[(t + 1) % 512 for t in row] for row in real(*args, **kwargs)]
  monkeypatch.setattr(inference_bench.inference, "generate", drifted)
  with pytest.raises(UserError, match="greedy ids differ.*first difference at"):
    inference_bench.compare("tiny", batch_size=2, prompt_len=5, new_tokens=4, repeats=1, threads=1)
