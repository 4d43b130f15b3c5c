"""The quickstart notebook (experiments/notebooks/quickstart.ipynb) runs headless from a clean temp dir,
as a user's kernel runs it: nbclient executes every cell against this checkout (`$LCBM_CHECKOUT`), on
CPU by the test's choice (JAX_PLATFORMS in the kernel's environment; the notebook picks no device),
and what it prints is checked: the prediction parses, the export loads in transformers with our logits."""
from __future__ import annotations

import json
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from data_pipeline import verbalize

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "notebooks" / "quickstart.ipynb"
pytestmark = pytest.mark.slow

# Appended by the test only: the recipe a wheel install builds (no experiments/ folder) must be the
# checkout's behavior_llava.py:cpu, or the two ways of running the notebook train different models.
WHEEL_RECIPE_CHECK = """
_root, ROOT = ROOT, None
try:
  _wheel_recipe = recipe([]).to_dict()
finally:
  ROOT = _root
print(json.dumps({"wheel_recipe_is_the_file": _wheel_recipe == recipe([]).to_dict()}))
"""


def kernel_env() -> dict:
  """The test process's environment for the kernel, on CPU and with one device (conftest's 8 simulated
  devices are for the sharding tests; a user's CPU runtime has one)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", LCBM_CHECKOUT=str(ROOT), OMP_NUM_THREADS="1")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags)
  return env


def tagged_stdout(nb, tag: str) -> str:
  cells = [c for c in nb.cells if tag in c.metadata.get("tags", ())]
  assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
  return "".join(o.text for o in cells[0].outputs if o.output_type == "stream" and o.name == "stdout")


def test_the_stored_notebook_is_clean_and_picks_no_device():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code), "store the notebook without outputs"
  source = "\n".join(c.source for c in code)
  assert "JAX_PLATFORMS" not in source and "jax_platforms" not in source   # GPU/TPU runtimes use theirs
  assert 'LCBM_WHEEL_OR_URL = ""' in source and "http" not in source       # no placeholder URL to fail on


def test_quickstart_runs_headless(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  check = nbformat.v4.new_code_cell(WHEEL_RECIPE_CHECK.strip(), metadata={"tags": ["wheel-recipe"]})
  nb.cells.append(check)
  # Cells run in order and the first error raises CellExecutionError with the traceback.
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute(env=kernel_env())

  pred = json.loads(tagged_stdout(nb, "prediction"))
  assert isinstance(pred["prediction"], str)
  # What the notebook printed as parsed is the BLIFT parser's reading of the printed text.
  assert pred["parsed"] == json.loads(json.dumps(verbalize.PARSERS["blift"](pred["prediction"])))
  assert pred["truth"]["upvotes"] > 0 and pred["truth"]["replay"] is None   # a post's image, not a video

  back = json.loads(tagged_stdout(nb, "hf-check"))
  assert back["max_abs_logit_diff"] < 1e-4, back
  assert back["same_greedy_tokens"] and back["transformers_prediction"] == pred["prediction"]
  assert json.loads(tagged_stdout(nb, "wheel-recipe")) == {"wheel_recipe_is_the_file": True}

  run = tmp_path / "runs" / "quickstart"
  assert (run / "train" / "checkpoints" / "20").is_dir() and (run / "train" / "metrics.png").is_file()
  assert (run / "hf" / "model.safetensors").is_file()
  # Fine-tuned from the tiny LLaVA transformers wrote: its tokenizer comes back byte for byte.
  assert (run / "hf" / "tokenizer.json").read_bytes() == (run / "tiny_llava" / "tokenizer.json").read_bytes()
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "display_data" and "image/png" in o.data]
  assert len(images) >= 4   # the corpus samples, the curves, metrics.png, the predicted image
