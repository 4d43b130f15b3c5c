"""Shared by the evaluation tests: random model parameters without compiling the initializer."""
import jax
import numpy as np

from lcbm_jax.model import lcbm


def random_params(cfg, seed: int = 0) -> dict:
  """Params of the right shapes and dtypes, N(0, 0.02) (norm scales 1), drawn with numpy.

  Evaluation only needs some model; skipping `lcbm.init_params` saves its jit compile per test process.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if any(getattr(k, "key", None) == "scale" for k in path):
      return np.ones(leaf.shape, leaf.dtype)
    return (0.02 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, lcbm.abstract_params(cfg))
