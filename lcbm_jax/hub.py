"""Hugging Face Hub ids where a model directory is expected: `llava-hf/llava-1.5-7b-hf` -> a local directory.

  hub.resolve("runs/imported", what="--hf-dir")                 # an existing path: returned as is
  hub.resolve("llava-hf/llava-1.5-7b-hf", what="init.checkpoint") # the cached (or downloaded) snapshot
  hub.resolve("lmsys/vicuna-7b-v1.5@main", what="init.llm_dir")   # `@revision`: branch, tag or commit

A Hub id is fetched with `huggingface_hub.snapshot_download`, which keeps the files in its cache
(HF_HUB_CACHE, else HF_HOME/hub) and, offline (HF_HUB_OFFLINE=1 or no network), answers from that
cache alone. Only what a model directory needs is fetched: JSON configs (model, tokenizer, processor,
generation, shard indexes), safetensors weights, the SentencePiece model, chat templates and vocab
text files; never pickled `.bin` weights, which lcbm does not read.
"""
from __future__ import annotations

import os
import re

from lcbm_jax.errors import UserError

# The files of a LLaVA, CLIP or Llama directory that lcbm reads (fnmatch patterns over repo paths).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt"]

# `owner/name` (the Hub's characters: letters, digits, `-`, `_`, `.`), then an optional `@revision`.
# Relative paths such as `runs/stage1` look the same, so resolve() looks on disk first.
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?")


def looks_like_hub_id(spec: str) -> bool:
  """Whether `spec` has the shape `owner/name[@revision]` (not whether such a repository exists)."""
  return _HUB_ID.fullmatch(spec) is not None and ".." not in spec


def resolve(spec: str, *, what: str) -> str:
  """A local path for `spec`: an existing path or a URL (`gs://...`) as is, a Hub id as its snapshot.

  `what` names where the value came from (a flag such as `--hf-dir`, a config key such as
  `init.checkpoint`) so the error says which one to fix. Raises UserError, one line, when the path
  does not exist and is no Hub id, or when the Hub id cannot be fetched (offline and not in the cache,
  unknown or gated repository, unknown revision).
  """
  if os.path.exists(spec) or "://" in spec:
    return spec   # remote paths (gs://, s3://) are checked by the code that opens them
  if not looks_like_hub_id(spec):
    raise UserError(f"{what}: path {spec!r} does not exist")
  match = _HUB_ID.fullmatch(spec)
  repo_id, revision = match["repo"], match["revision"]
  # Imported here, not at the top: only a Hub id needs it, and the `lcbm` commands that take paths
  # stay quick to start.
  import huggingface_hub
  from huggingface_hub import constants
  from huggingface_hub import errors as hub_errors

  download = f"hf download {repo_id}{f' --revision {revision}' if revision else ''} --local-dir DIR"
  flag = what if what.startswith("-") else f"--config.{what}"   # a command-line flag, or a config key
  alternative = f"on a machine with network run `{download}`, copy DIR here and pass {flag}=DIR (a local directory)"
  at_revision = f" at revision {revision!r}" if revision else ""
  try:
    return huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS)
  except hub_errors.GatedRepoError:
    raise UserError(f"{what}: {repo_id!r} is a gated Hugging Face Hub model; accept its licence on "
                    f"huggingface.co and log in with `hf auth login`, or {alternative}") from None
  except hub_errors.RepositoryNotFoundError:
    raise UserError(f"{what}: {spec!r} is no local path, and the Hugging Face Hub has no model "
                    f"{repo_id!r} (or it is private: log in with `hf auth login`)") from None
  except hub_errors.RevisionNotFoundError:
    raise UserError(f"{what}: the Hugging Face Hub model {repo_id!r} has no revision {revision!r}") from None
  except hub_errors.LocalEntryNotFoundError as e:
    # Offline, no network, or the Hub down, and the cache cannot answer alone.
    offline = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
    incomplete = getattr(hub_errors, "IncompleteSnapshotError", ())   # huggingface_hub >= 2
    if isinstance(e, incomplete):
      raise UserError(f"{what}: cannot reach the Hugging Face Hub for {repo_id!r} ({offline}) and its cached "
                      f"snapshot{at_revision} in {constants.HF_HUB_CACHE} is incomplete; {alternative}") from None
    raise UserError(f"{what}: cannot reach the Hugging Face Hub for {repo_id!r} ({offline}, and it is not in "
                    f"the cache at {constants.HF_HUB_CACHE}{at_revision}); {alternative}") from None
  except hub_errors.HFValidationError as e:
    raise UserError(f"{what}: path {spec!r} does not exist (and is no valid Hub id: "
                    f"{str(e).splitlines()[0]})") from None
  except hub_errors.HfHubHTTPError as e:
    raise UserError(f"{what}: the Hugging Face Hub refused {repo_id!r} ({str(e).splitlines()[0]}); "
                    f"{alternative}") from None
