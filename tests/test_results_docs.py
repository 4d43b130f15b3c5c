"""docs/results.md's study tables are rendered from the JSON results committed in docs/results/: each is
rendered again here by its study's own `render` and must equal its block in docs/results.md (so no table
is edited by hand, and none goes stale when a study's rendering changes); a block without its JSON fails.

Only counted full-mode runs are committed there; until a study's lands, it has neither file nor block."""
from __future__ import annotations

import copy
import pathlib

from lcbm_jax.study import report

import study_helpers

DOCS = pathlib.Path(study_helpers.ROOT) / "docs"
STUDIES = ("free_lunch", "lcbm_kbft", "domain_adaptation")


def _committed() -> list[str]:
  return sorted(p.stem for p in (DOCS / "results").glob("*.json"))


def test_every_committed_result_renders_to_its_block_in_results_md():
  names = _committed()
  assert set(names) <= set(STUDIES), names
  document = (DOCS / "results.md").read_text()
  for name in names:
    result = report.load_result(str(DOCS / "results" / f"{name}.json"))
    assert result["mode"] == "full", f"{name}: docs carry full-mode results only"
    block = report.read_block(document, name)
    assert block is not None, f"docs/results.md has no <!-- study:{name} --> block"
    render = study_helpers.load(name).render
    assert block == render(result).strip(), (
        f"docs/results.md's {name} block is not what docs/results/{name}.json renders to: run "
        f"python experiments/{name}.py --workdir WORKDIR --results-md docs/results.md on the study's workdir")
    # The comparison can fail: a changed number changes the table.
    changed = copy.deepcopy(result)
    changed["seeds"] = [*changed["seeds"], 99]
    assert render(changed).strip() != block


def test_every_block_in_results_md_has_its_committed_result():
  document = (DOCS / "results.md").read_text()
  blocks = [name for name in STUDIES if report.read_block(document, name) is not None]
  assert set(blocks) <= set(_committed()), "a study block in docs/results.md without its JSON in docs/results/"
