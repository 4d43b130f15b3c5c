"""A Hugging Face tokenizer directory behind the codec's `TextTokenizer` interface.

A pretrained model comes with its tokenizer, and its ids are the ones the weights were trained on, so
we run the directory's own `tokenizer.json` through the `tokenizers` library (the engine transformers
itself runs) rather than rebuilding it: the ids are then transformers' ids for every text, including
its conventions around `<image>`, leading spaces and special tokens written in the text (`</s>`).

  tok = HFTokenizer.load("llava-1.5-7b-hf/")     # tokenizer.json + tokenizer_config.json (+ the rest)
  tok.save(out_dir)                              # the files, byte for byte as they came

The special ids come from `tokenizer_config.json` / `special_tokens_map.json`; the tokens the
post-processor adds (`add_special_tokens=True`, e.g. LLaMA's `<s>`) are `prefix_ids`. A directory
without a pad token gets an existing id (unk, else eos) as padding: padded positions are masked, so
no row is added to the model's embedding for it.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tokenizers

from lcbm_jax.errors import UserError

TOKENIZER_JSON = "tokenizer.json"
# Every file of a Hugging Face tokenizer that we carry (checkpoint, export) byte for byte.
FILES = (TOKENIZER_JSON, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
         "tokenizer.model", "chat_template.jinja", "chat_template.json")
IMAGE_TOKEN = "<image>"


def _read_json(files: dict[str, bytes], name: str) -> dict:
  if name not in files:
    return {}
  try:
    value = json.loads(files[name])
  except ValueError as e:
    raise UserError(f"tokenizer file {name} is not valid JSON ({e})") from None
  return value if isinstance(value, dict) else {}


def _token_text(value) -> str | None:
  # transformers writes special tokens either as strings or as AddedToken dicts ({"content": ...}).
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) and value else None


class HFTokenizer:
  """A `tokenizers.Tokenizer` from a Hugging Face directory, with the special ids the codec needs."""

  # `tokenizers` reports offsets that drift after a character the vocabulary cannot encode and drops
  # (a BPE without byte pieces), so the codec finds segment boundaries by encoding prefixes instead.
  offsets_exact = False

  def __init__(self, files: dict[str, bytes], image_token: str | None = None, *, require_image: bool = True):
    if TOKENIZER_JSON not in files:
      raise UserError("a Hugging Face tokenizer needs tokenizer.json (save it with a fast tokenizer)")
    self.files = dict(files)
    try:
      self._tk = tokenizers.Tokenizer.from_str(files[TOKENIZER_JSON].decode("utf-8"))
    except Exception as e:  # the Rust parser raises plain Exception subclasses
      raise UserError(f"tokenizer.json cannot be read by the tokenizers library ({e})") from None
    # The codec builds whole samples itself; padding or truncation inside encode would corrupt them.
    self._tk.no_padding()
    self._tk.no_truncation()
    config = {**_read_json(files, "special_tokens_map.json"), **_read_json(files, "tokenizer_config.json")}

    def special(key: str) -> int | None:
      text = _token_text(config.get(key))
      return None if text is None else self._tk.token_to_id(text)

    self.vocab_size = self._tk.get_vocab_size(with_added_tokens=True)
    self.bos_id, self.eos_id, self.unk_id = special("bos_token"), special("eos_token"), special("unk_token")
    if self.eos_id is None:
      raise UserError("the tokenizer has no eos_token in tokenizer_config.json; targets must end with one")
    pad = special("pad_token")
    self.pad_id = pad if pad is not None else self.unk_id if self.unk_id is not None else self.eos_id
    if self.unk_id is None:
      self.unk_id = self.pad_id   # only used to show ids that have no piece
    self.image_token = image_token or _token_text(config.get("image_token")) or IMAGE_TOKEN
    image_id = self._tk.token_to_id(self.image_token)
    if image_id is None and require_image:
      raise UserError(f"the tokenizer has no {self.image_token!r} token; a LLaVA tokenizer needs one "
                      "(a CLIP + Llama import adds it: lcbm import-hf --vision-dir ... --llm-dir ...)")
    self.image_id = image_id
    plain = self._tk.encode("a", add_special_tokens=False).ids
    full = self._tk.encode("a", add_special_tokens=True).ids
    start = next((k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain), 0)
    self.prefix_ids = tuple(full[:start])

  def __reduce__(self):
    # Grain workers receive the codec by pickle; the files rebuild it exactly.
    return (HFTokenizer, (self.files, self.image_token))

  @classmethod
  def load(cls, directory: str | os.PathLike, image_token: str | None = None, *,
           require_image: bool = True) -> HFTokenizer:
    """The tokenizer files of a Hugging Face directory (tokenizer.json is required). A plain Llama
    tokenizer (`require_image=False`) has no `<image>` yet: `image_id` is None until `add_tokens`."""
    directory = os.fspath(directory)
    files = {}
    for name in FILES:
      path = os.path.join(directory, name)
      if os.path.isfile(path):
        with open(path, "rb") as f:
          files[name] = f.read()
    if TOKENIZER_JSON not in files:
      raise UserError(f"no {TOKENIZER_JSON} in {directory}; pass a Hugging Face tokenizer directory")
    return cls(files, image_token, require_image=require_image)

  def save(self, out_dir: str | os.PathLike) -> str:
    """Writes the files as they came (byte-identical); returns the directory."""
    os.makedirs(out_dir, exist_ok=True)
    for name, data in self.files.items():
      with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    return os.fspath(out_dir)

  def special_ids(self) -> dict[str, int]:
    """bos/eos/pad_token_id for config.json and generation_config.json."""
    ids = {"bos_token_id": self.bos_id, "eos_token_id": self.eos_id, "pad_token_id": self.pad_id}
    return {k: v for k, v in ids.items() if v is not None}

  # -- encoding ----------------------------------------------------------------------------

  def encode(self, text: str) -> list[int]:
    """Ids of `text` without the post-processor's specials (the codec adds `prefix_ids`)."""
    return self._tk.encode(text, add_special_tokens=False).ids

  def encode_with_offsets(self, text: str) -> list[tuple[int, int, int]]:
    """(id, first byte, end byte) per token; `tokenizers` reports character offsets, the codec bytes."""
    enc = self._tk.encode(text, add_special_tokens=False)
    byte_at = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text], dtype=np.int64)])
    return [(i, int(byte_at[b]), int(byte_at[e])) for i, (b, e) in zip(enc.ids, enc.offsets)]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; bos, eos and pad decode to nothing (as SentencePiece's control pieces), added
    tokens such as role markers stay text."""
    control = {self.bos_id, self.eos_id, self.pad_id}
    return self._tk.decode([int(i) for i in ids if int(i) not in control], skip_special_tokens=False)

  def id_to_piece(self, i: int) -> str:
    return self._tk.id_to_token(int(i)) or ""


def add_tokens(tok: HFTokenizer, *, image_token: str, pad_token: str) -> HFTokenizer:
  """`tok` with `image_token` and, when it has no pad token, `pad_token` appended as special tokens
  (existing ids never move): what a Llama tokenizer gains to become LLaVA's."""
  tk = tokenizers.Tokenizer.from_str(tok.files[TOKENIZER_JSON].decode("utf-8"))
  config = _read_json(tok.files, "tokenizer_config.json")
  has_pad = _token_text(config.get("pad_token")) is not None
  new = [t for t in (image_token, None if has_pad else pad_token) if t is not None and tk.token_to_id(t) is None]
  if not new and has_pad:
    return tok
  tk.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in new])
  if not has_pad:
    config["pad_token"] = pad_token
  files = {**tok.files, TOKENIZER_JSON: tk.to_str().encode("utf-8"),
           "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8")}
  return HFTokenizer(files, image_token)
