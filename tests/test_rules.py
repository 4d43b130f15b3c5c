"""House rules that later work must keep, checked on the source with `ast`: text becomes ids only in the
codec (and the tokenizer behind it), SentencePiece is called only from tokenizer.py, and the README
stays a manual."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ("lcbm_jax", "data_pipeline", "experiments")
CODEC_OWNERS = {"data_pipeline/codec.py", "data_pipeline/tokenizer.py", "data_pipeline/hf_tokenizer.py"}
# Tokenizer calls that turn text into ids, and the image-token expansion: the codec's job.
ENCODERS = {"encode_with_offsets", "encode_segments", "expand_image_tokens", "encode_as_ids", "encode_as_pieces"}


def _sources(roots=LIBRARY):
  for root in roots:
    for path in sorted((ROOT / root).rglob("*.py")):
      yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _receiver(node: ast.AST) -> str:
  return ast.unparse(node).lower()


def tokenization_outside_codec(sources) -> list[str]:
  """file:line of every call that tokenizes text or expands <image> outside the codec and tokenizer."""
  found = []
  for rel, tree in sources:
    if rel in CODEC_OWNERS:
      continue
    for node in ast.walk(tree):
      if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        # `.encode(` on a tokenizer (tok, tokenizer, self.tokenizer, sp ...), not str.encode("utf-8").
        on_tokenizer = isinstance(f, ast.Attribute) and name == "encode" and any(
            k in _receiver(f.value) for k in ("tok", "sp", "processor"))
        if name in ENCODERS or on_tokenizer:
          found.append(f"{rel}:{node.lineno}: {ast.unparse(f)}")
      elif isinstance(node, (ast.ImportFrom, ast.Import)):
        names = [a.name for a in node.names]
        if any(n in ENCODERS for n in names):
          found.append(f"{rel}:{node.lineno}: imports {', '.join(n for n in names if n in ENCODERS)}")
  return found


def sentencepiece_outside_tokenizer(sources) -> list[str]:
  found = []
  for rel, tree in sources:
    if rel == "data_pipeline/tokenizer.py":
      continue
    for node in ast.walk(tree):
      mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
              else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      if any(m == "sentencepiece" or m.startswith("sentencepiece.") for m in mods):
        found.append(f"{rel}:{node.lineno}")
  return found


def test_text_becomes_ids_only_in_the_codec():
  assert tokenization_outside_codec(_sources()) == []


def test_sentencepiece_is_called_only_from_tokenizer_py():
  assert sentencepiece_outside_tokenizer(_sources()) == []


def test_the_checkers_catch_what_they_forbid():
  bad = ast.parse("from data_pipeline.codec import expand_image_tokens\n"
                  "ids = tok.encode(text)\nx = self.tokenizer.encode_with_offsets(t)\n"
                  "ok = text.encode('utf-8')\nimport sentencepiece as spm\n")
  assert [f.split(": ", 1)[0] for f in tokenization_outside_codec([("lcbm_jax/x.py", bad)])] == [
      "lcbm_jax/x.py:1", "lcbm_jax/x.py:2", "lcbm_jax/x.py:3"]
  assert sentencepiece_outside_tokenizer([("lcbm_jax/x.py", bad)]) == ["lcbm_jax/x.py:5"]
  assert tokenization_outside_codec([("data_pipeline/codec.py", bad)]) == []


def test_readme_is_a_manual_under_450_lines():
  lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
  assert len(lines) < 450, f"README.md has {len(lines)} lines; move run logs and tables to docs/"
