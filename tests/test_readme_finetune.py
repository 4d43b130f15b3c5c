"""The README's CPU miniature of the fine-tuning workflow runs as written: only its paths (runs/ft ->
a temp dir) and step counts are substituted, and every command must exit 0."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def miniature_block() -> str:
  text = (ROOT / "README.md").read_text(encoding="utf-8")
  section = text[text.index("## Fine-tune a pretrained LLaVA"):]
  section = section[section.index("The CPU miniature"):]
  return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_cpu_miniature_runs(tmp_path):
  block = miniature_block()
  assert "experiments/tiny_llava.py" in block and "content_only=true" in block and "export-hf" in block
  script = block.replace("runs/ft", str(tmp_path / "ft")).replace("num_steps=20", "num_steps=3")
  assert script.count("num_steps=3") == 2
  bin_dir = os.path.dirname(sys.executable)
  env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "JAX_PLATFORMS": "cpu",
         "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
  # `lcbm` as installed by `pip install -e .`; without the entry point, the module is the same command.
  shim = tmp_path / "bin"
  shim.mkdir()
  (shim / "lcbm").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lcbm_jax.cli "$@"\n')
  (shim / "lcbm").chmod(0o755)
  (shim / "python").symlink_to(sys.executable)
  env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
  proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "set -x\n" + script], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert (tmp_path / "ft/hf/model.safetensors").is_file()
  # behavior_llava trains in Vicuna v1 turns: the export carries them as its chat template, and the
  # tokenizer it started from comes back byte for byte.
  assert "ASSISTANT:" in (tmp_path / "ft/hf/chat_template.jinja").read_text()
  assert (tmp_path / "ft/hf/tokenizer.json").read_bytes() == (tmp_path / "ft/llava/tokenizer.json").read_bytes()
  assert (tmp_path / "ft/control/checkpoints/3").is_dir()
