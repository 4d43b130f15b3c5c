"""Layering rules, read from the source with `ast`: no import cycle, no forbidden direction, no
unexplained import inside a function, and commands (`cli_*`, argparse) only in lcbm_jax/cli/ and
experiments/.

The checker is a handful of functions (`import_graph`, `find_cycles`, `forbidden_edges`,
`uncommented_local_imports`) so it is tested on a small synthetic package too: a rule that cannot
fail proves nothing.
"""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROOTS = ("lcbm_jax", "data_pipeline", "experiments")
COMMAND_PACKAGES = ("lcbm_jax.cli", "experiments")   # where parsers and command handlers live


@dataclasses.dataclass(frozen=True)
class Import:
  """One import statement's edge: `source` (module) imports `target` (module, resolved)."""
  source: str
  target: str
  path: str        # file, relative to the tree's root
  line: int
  local: bool      # inside a function (executed at call time, not at import time)
  commented: bool  # a comment on its line(s) or the line above (above the first of adjacent imports)


@dataclasses.dataclass(frozen=True)
class Rule:
  """Modules under `sources` (minus `exempt`) must not import modules under `targets` (minus `allowed`)."""
  sources: tuple[str, ...]
  targets: tuple[str, ...]
  why: str
  allowed: tuple[str, ...] = ()
  exempt: tuple[str, ...] = ()


RULES = (
    Rule(("data_pipeline",), ("lcbm_jax",), "the data pipeline uses nothing of lcbm_jax but its error type and "
         "the one path abstraction (local or gs://)", allowed=("lcbm_jax.errors", "lcbm_jax.paths")),
    Rule(("lcbm_jax.model",), ("lcbm_jax.sharding", "lcbm_jax.training", "lcbm_jax.evaluation", "lcbm_jax.cli",
                               "data_pipeline"),
         "the model is a leaf layer: shapes and math only (axis rules come from lcbm_jax.axes)"),
    Rule(("lcbm_jax", "data_pipeline"), ("lcbm_jax.cli", "experiments"),
         "library code never reaches up into commands or experiments", exempt=("lcbm_jax.cli",)),
)


def under(module: str, prefixes) -> bool:
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def _modules(tree_root: pathlib.Path, roots) -> dict[str, pathlib.Path]:
  """Module name -> file for every .py under the roots (a package's name -> its __init__.py)."""
  out = {}
  for root in roots:
    for path in sorted((tree_root / root).rglob("*.py")):
      parts = path.relative_to(tree_root).with_suffix("").parts
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = path
  return out


def _comment_lines(path: pathlib.Path) -> set[int]:
  with open(path, "rb") as f:
    return {tok.start[0] for tok in tokenize.tokenize(f.readline) if tok.type == tokenize.COMMENT}


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool, known) -> list[str]:
  """`from X import a, b` -> X.a / X.b where those are modules, else X (relative levels resolved)."""
  if node.level:
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    name = ".".join(base + ([node.module] if node.module else []))
  else:
    name = node.module
  targets = []
  for alias in node.names:
    sub = f"{name}.{alias.name}"
    targets.append(sub if sub in known else name)
  return list(dict.fromkeys(targets))


def import_graph(roots, tree_root=ROOT) -> dict[str, list[Import]]:
  """Module -> its imports (module level and inside functions; project and third-party targets)."""
  tree_root = pathlib.Path(tree_root)
  known = _modules(tree_root, roots)
  graph: dict[str, list[Import]] = {}
  for module, path in known.items():
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    comments = _comment_lines(path)
    rel = str(path.relative_to(tree_root))
    edges = graph.setdefault(module, [])

    def visit(node, local):
      block = None   # (end line, commented) of the import just before, while imports follow each other
      for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
          targets = [a.name for a in child.names]
        elif isinstance(child, ast.ImportFrom):
          targets = _resolve_from(child, module, path.name == "__init__.py", known)
        else:
          block = None
          visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
          continue
        commented = bool(comments & set(range(child.lineno - 1, child.end_lineno + 1)))
        if block is not None and block[0] == child.lineno - 1:
          commented = commented or block[1]   # one reason above a block of imports covers the block
        block = (child.end_lineno, commented)
        edges.extend(Import(module, t, rel, child.lineno, local, commented) for t in targets)

    visit(tree, False)
  return graph


def project_edges(graph: dict[str, list[Import]]) -> dict[str, set[str]]:
  """The graph restricted to modules it holds (third-party imports dropped)."""
  return {m: {e.target for e in edges if e.target in graph and e.target != m} for m, edges in graph.items()}


def find_cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
  """One cycle (module path, first module repeated at the end) per strongly connected component."""
  adj = project_edges(graph)
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  components = []

  def strongconnect(v):   # Tarjan; the graph is a few hundred modules, recursion is fine
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(adj[v]):
      if w not in index:
        strongconnect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.add(w)
        if w == v:
          break
      if len(comp) > 1:
        components.append(comp)

  for v in sorted(adj):
    if v not in index:
      strongconnect(v)
  cycles = []
  for comp in components:
    start = min(comp)
    parents, frontier = {start: None}, [start]
    while frontier and start not in [w for v in frontier for w in adj[v]]:
      nxt = []
      for v in frontier:
        for w in sorted(adj[v] & comp):
          if w not in parents:
            parents[w] = v
            nxt.append(w)
      frontier = nxt
    last = min(v for v in frontier if start in adj[v])
    path = [last]
    while parents[path[-1]] is not None:
      path.append(parents[path[-1]])
    cycles.append(path[::-1] + [start])
  return sorted(cycles)


def forbidden_edges(graph: dict[str, list[Import]], rules=RULES) -> list[str]:
  """'path:line source -> target: why' for every import a rule forbids."""
  out = []
  for edges in graph.values():
    for e in edges:
      for r in rules:
        if (under(e.source, r.sources) and not under(e.source, r.exempt) and under(e.target, r.targets)
            and not under(e.target, r.allowed)):
          out.append(f"{e.path}:{e.line} {e.source} -> {e.target}: {r.why}")
  return sorted(set(out))


def uncommented_local_imports(graph: dict[str, list[Import]]) -> list[str]:
  """'path:line' of every import inside a function with no comment giving its reason."""
  return sorted({f"{e.path}:{e.line}" for edges in graph.values() for e in edges if e.local and not e.commented})


def command_code_outside_cli(tree_root=ROOT, roots=ROOTS) -> list[str]:
  """'path:line what' for a `cli_*` function or an argparse import outside lcbm_jax/cli/ and experiments/."""
  tree_root = pathlib.Path(tree_root)
  out = []
  for module, path in _modules(tree_root, roots).items():
    if under(module, COMMAND_PACKAGES):
      continue
    rel = path.relative_to(tree_root)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("cli_"):
        out.append(f"{rel}:{node.lineno} def {node.name}")
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
      if any(under(n, ("argparse",)) for n in names):
        out.append(f"{rel}:{node.lineno} import argparse")
  return sorted(out)


# ---------------------------------------------------------------------------------------------
# The rules on this repository.

def test_no_import_cycle():
  cycles = find_cycles(import_graph(ROOTS))
  assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_forbidden_import_direction():
  bad = forbidden_edges(import_graph(ROOTS))
  assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_imports_inside_functions_say_why():
  bad = uncommented_local_imports(import_graph(ROOTS))
  assert not bad, ("imports inside a function without a one-line reason (a comment on the line, or on the "
                   "line above it or above its block of imports; or move them to the top):\n" + "\n".join(bad))


def test_commands_live_in_the_cli_package():
  bad = command_code_outside_cli()
  assert not bad, "command code outside lcbm_jax/cli/ and experiments/:\n" + "\n".join(bad)


def test_the_model_reads_axis_rules_from_the_leaf_module():
  graph = import_graph(ROOTS)
  assert {e.target for e in graph["lcbm_jax.axes"]} <= {"__future__", "math", "typing", "jax.sharding"}
  assert "lcbm_jax.axes" in {e.target for e in graph["lcbm_jax.model.attention"]}
  assert "lcbm_jax.axes" in {e.target for e in graph["lcbm_jax.sharding"]}


# ---------------------------------------------------------------------------------------------
# The checker itself, on a synthetic tree where every rule is broken once.

def _write(root: pathlib.Path, files: dict[str, str]) -> None:
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_reports_a_cycle_a_forbidden_edge_and_a_bare_local_import(tmp_path):
  _write(tmp_path, {
      "data_pipeline/__init__.py": "",
      "data_pipeline/a.py": "from data_pipeline import b\n",
      "data_pipeline/b.py": "from .a import thing\n",                      # relative: data_pipeline.a
      "data_pipeline/c.py": "from lcbm_jax.training import train\n",
      "data_pipeline/d.py": ("import os\n\n\ndef f():\n  import json\n  # why: optional heavy dependency\n"
                             "  import numpy\n  from lcbm_jax import errors\n  x = 1\n  import csv\n"
                             "  return json, numpy, errors, os, x, csv\n"),
      "lcbm_jax/__init__.py": "",
      "lcbm_jax/errors.py": "",
      "lcbm_jax/training/__init__.py": "",
      "lcbm_jax/training/train.py": "import lcbm_jax.errors as errors\n",
      "lcbm_jax/model/__init__.py": "",
      "lcbm_jax/model/llm.py": "from lcbm_jax import sharding\n",
      "lcbm_jax/sharding.py": "from lcbm_jax.model import llm\n",         # and a second cycle, across packages
      "lcbm_jax/tool.py": "import argparse\n\n\ndef cli_tool(args):\n  return args\n",
      "lcbm_jax/cli/__init__.py": "import argparse\nfrom lcbm_jax import tool\n\n\ndef cli_ok(args):\n  return args\n",
  })
  graph = import_graph(("data_pipeline", "lcbm_jax"), tmp_path)
  assert {e.target for e in graph["data_pipeline.c"]} == {"lcbm_jax.training.train"}
  assert {e.target for e in graph["data_pipeline.b"]} == {"data_pipeline.a"}
  assert {e.target for e in graph["lcbm_jax.training.train"]} == {"lcbm_jax.errors"}

  assert find_cycles(graph) == [["data_pipeline.a", "data_pipeline.b", "data_pipeline.a"],
                                ["lcbm_jax.model.llm", "lcbm_jax.sharding", "lcbm_jax.model.llm"]]
  bad = forbidden_edges(graph)
  assert [b.split(":")[0] + ":" + b.split(" ")[1] for b in bad] == [
      "data_pipeline/c.py:data_pipeline.c", "lcbm_jax/model/llm.py:lcbm_jax.model.llm"]
  assert "data_pipeline.c -> lcbm_jax.training.train" in bad[0]
  assert "lcbm_jax.model.llm -> lcbm_jax.sharding" in bad[1]
  # `import json` has no reason; `from lcbm_jax import errors` shares numpy's (adjacent); `import csv` does not.
  assert uncommented_local_imports(graph) == ["data_pipeline/d.py:10", "data_pipeline/d.py:5"]
  assert command_code_outside_cli(tmp_path, ("data_pipeline", "lcbm_jax")) == [
      "lcbm_jax/tool.py:1 import argparse", "lcbm_jax/tool.py:4 def cli_tool"]
