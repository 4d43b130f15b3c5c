"""Tokenizers for lcbm: the interface the codec calls (`TextTokenizer`), and SentencePiece behind it.

Id conventions are LLaMA's, so an exported `tokenizer.model` loads in Hugging Face's
`LlamaTokenizer` with the same ids: `<unk>` = 0, `<s>` = 1, `</s>` = 2. Padding uses a dedicated
`<pad>` control piece (never produced from text); `<image>` and the role markers are
user-defined pieces, so they are always one id and never split or merged with neighbours.

- `Tokenizer.train` (BPE, byte fallback, identity normalisation, digits split) puts `<pad>` at 3,
  `<image>` at 4 and the role markers after it.
- `Tokenizer.load` of an existing LLaMA `tokenizer.model` keeps every id and appends what the model
  lacks at the end: `<image>` then `<pad>` (ids 32000 and 32001 for LLaMA, as in LLaVA-1.5 on HF).

Identity normalisation without whitespace folding makes `decode(encode(x)) == x` for any text.
Control and unknown pieces written in the text (`</s>`, as a conversation template ends each answer)
are their ids, and the text around them is encoded piece by piece, as Hugging Face tokenizers treat
special tokens (and as the exported tokenizer.json does).

`load(path)` opens either kind: a directory with a Hugging Face `tokenizer.json` is the model's own
tokenizer (`hf_tokenizer.HFTokenizer`), anything else a SentencePiece model.
"""
from __future__ import annotations

import io
import json
import os
import re
from typing import Any, Iterable, Protocol, Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from data_pipeline.hf_tokenizer import TOKENIZER_JSON, HFTokenizer
from lcbm_jax.errors import UserError

IMAGE_PIECE = "<image>"
PAD_PIECE = "<pad>"
# Role markers of the conversation templates (BLIFT, LLaVA-style); one piece each.
ROLE_PIECES = ("USER:", "ASSISTANT:", "SYSTEM:")
MODEL_FILENAME = "tokenizer.model"

_Piece = model_pb2.ModelProto.SentencePiece


class TextTokenizer(Protocol):
  """What the codec needs of a tokenizer, whatever library is behind it."""
  vocab_size: int
  unk_id: int
  eos_id: int
  pad_id: int
  image_id: int
  prefix_ids: tuple[int, ...]   # what the tokenizer puts before a text (LLaMA: <s>)

  def encode(self, text: str) -> list[int]: ...
  def encode_with_offsets(self, text: str) -> list[tuple[int, int, int]]: ...
  def decode(self, ids: Sequence[int]) -> str: ...
  def id_to_piece(self, i: int) -> str: ...
  def save(self, out_dir: str | os.PathLike) -> str: ...


def load(path: str | os.PathLike) -> "Tokenizer | HFTokenizer":
  """The tokenizer at `path`: a Hugging Face directory (tokenizer.json), else a SentencePiece model
  (a tokenizer.model file or its directory)."""
  path = os.fspath(path)
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, TOKENIZER_JSON)):
    return HFTokenizer.load(path)
  return Tokenizer.load(path)


class Tokenizer:
  """A SentencePiece model plus the lcbm special ids (image, pad)."""

  def __init__(self, model_proto: bytes):
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    pieces = {p.piece: i for i, p in enumerate(proto.pieces)}
    # Append what a plain LLaMA model lacks; existing ids never move.
    if IMAGE_PIECE not in pieces:
      proto.pieces.add(piece=IMAGE_PIECE, score=0.0, type=_Piece.USER_DEFINED)
    if PAD_PIECE not in pieces:
      proto.pieces.add(piece=PAD_PIECE, score=0.0, type=_Piece.CONTROL)
    proto.trainer_spec.pad_piece = PAD_PIECE
    proto.trainer_spec.pad_id = [p.piece for p in proto.pieces].index(PAD_PIECE)
    self._proto_bytes = proto.SerializeToString()
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto_bytes)
    self.vocab_size = self._sp.get_piece_size()
    self.unk_id = self._sp.unk_id()
    self.bos_id = self._sp.bos_id()
    self.eos_id = self._sp.eos_id()
    self.pad_id = self._sp.piece_to_id(PAD_PIECE)
    self.image_id = self._sp.piece_to_id(IMAGE_PIECE)
    if min(self.bos_id, self.eos_id) < 0:
      raise UserError("tokenizer model has no <s> or </s> piece; use a LLaMA-style SentencePiece model")
    self.prefix_ids = (self.bos_id,)
    # Pieces that text never produces but may name (`</s>` in a conversation): cut out, as HF does.
    specials = [p.piece for p in proto.pieces if p.type in (_Piece.CONTROL, _Piece.UNKNOWN)]
    self._special_re = re.compile("|".join(re.escape(p) for p in sorted(specials, key=len, reverse=True)))

  def __reduce__(self):
    # Grain workers receive the tokenizer by pickle; the (already extended) proto rebuilds it exactly.
    return (Tokenizer, (self._proto_bytes,))

  # -- construction ------------------------------------------------------------------------

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike | None = None) -> Tokenizer:
    """Trains a LLaMA-style BPE model on `texts` (seconds on a small corpus); saves it if `out_dir`."""
    if vocab_size < 300:
      raise UserError(f"vocab_size={vocab_size} is too small: byte fallback alone needs 256 ids; use >= 300")
    buf = io.BytesIO()
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
          byte_fallback=True, split_digits=True, normalization_rule_name="identity",
          remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
          character_coverage=0.9995, user_defined_symbols=[IMAGE_PIECE, *ROLE_PIECES],
          unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece=PAD_PIECE,
          # A small corpus may not support the requested size; take what it has instead of failing.
          hard_vocab_limit=False, max_sentence_length=1 << 16, num_threads=1, minloglevel=2)
    except RuntimeError as e:
      raise UserError(f"SentencePiece training failed ({e}); give it more text or a smaller vocab_size") from None
    tok = cls(buf.getvalue())
    if out_dir is not None:
      tok.save(out_dir)
    return tok

  @classmethod
  def load(cls, path: str | os.PathLike) -> Tokenizer:
    """Loads `path` (a tokenizer.model file, or a directory holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
      path = os.path.join(path, MODEL_FILENAME)
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError:
      raise UserError(f"no tokenizer at {path}; pass a tokenizer.model file or its directory") from None
    try:
      return cls(data)
    except Exception as e:  # protobuf / sentencepiece parse errors have no common base class
      if isinstance(e, UserError):
        raise
      raise UserError(f"{path} is not a SentencePiece model ({type(e).__name__}: {e})") from None

  def save(self, out_dir: str | os.PathLike) -> str:
    """Writes `out_dir/tokenizer.model`; returns its path (what a checkpoint carries)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MODEL_FILENAME)
    with open(path + ".tmp", "wb") as f:
      f.write(self._proto_bytes)
    os.replace(path + ".tmp", path)
    return path

  @property
  def model_proto(self) -> bytes:
    return self._proto_bytes

  def save_hf(self, out_dir: str, image_token: str = IMAGE_PIECE) -> dict[str, int]:
    """The Hugging Face tokenizer files of this model (export); returns bos/eos/pad_token_id."""
    return write_hf_tokenizer(out_dir, self._proto_bytes, image_token)

  # -- encoding ----------------------------------------------------------------------------

  def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    """Token ids of `text`; each "<image>" becomes the single id `image_id`, each `</s>` eos."""
    ids = [i for i, _, _ in self.encode_with_offsets(text)]
    return [self.bos_id] * add_bos + ids + [self.eos_id] * add_eos

  def encode_with_offsets(self, text: str) -> list[tuple[int, int, int]]:
    """(id, first byte, end byte) per piece of `text`, byte offsets into its UTF-8 encoding; a
    zero-width piece (the dummy prefix, a leading byte-fallback piece) has first == end."""
    out, pos, base = [], 0, 0
    for m in self._special_re.finditer(text):
      out += self._encode_plain(text[pos:m.start()], base)
      base += len(text[pos:m.start()].encode("utf-8"))
      width = len(m.group().encode("utf-8"))
      out.append((self._sp.piece_to_id(m.group()), base, base + width))
      base += width
      pos = m.end()
    return out + self._encode_plain(text[pos:], base)

  def _encode_plain(self, text: str, base: int) -> list[tuple[int, int, int]]:
    if not text:
      return []
    return [(p.id, base + p.begin, base + p.end) for p in self._sp.encode(text, return_type="proto").pieces]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; control ids (bos, eos, pad) decode to nothing."""
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))


# ---------------------------------------------------------------------------------------------
# Export: the Hugging Face files of a SentencePiece model.

def _tokenizer_json(proto) -> dict[str, Any]:
  """tokenizer.json that reproduces SentencePiece's encoding.

  transformers' own LlamaTokenizer differs from SentencePiece around user-defined symbols such as
  `<image>` (no dummy prefix before a leading `<image>`, one after each) and leading spaces, so we
  describe the model directly: SentencePiece's dummy prefix as a normalizer, no pre-tokenizer, and
  the user-defined symbols as *normalized* added tokens, cut out after the dummy prefix as
  SentencePiece does. The prefix regex skips a text that is exactly one such symbol, because
  tokenizers normalizes the symbols themselves with the same normalizer; the one difference left is
  that a text consisting of only `<image>` encodes without SentencePiece's leading `▁` piece.
  """
  piece_cls = type(proto.pieces[0])
  ns, ts = proto.normalizer_spec, proto.trainer_spec
  if ns.name not in ("identity", "") and ns.precompiled_charsmap:
    raise UserError(f"tokenizer normalization {ns.name!r} cannot be exported exactly; train it with "
                    "normalization_rule_name='identity' (as LLaMA does)")
  if ns.remove_extra_whitespaces:
    raise UserError("tokenizer removes extra whitespace, which Hugging Face tokenizers cannot reproduce; "
                    "train it with remove_extra_whitespaces=False (as LLaMA does)")
  pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
  vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
  added, user = [], []
  for i, (piece, _, typ) in enumerate(pieces):
    if typ in (piece_cls.CONTROL, piece_cls.UNKNOWN, piece_cls.USER_DEFINED):
      added.append({"id": i, "content": piece, "single_word": False, "lstrip": False, "rstrip": False,
                    "normalized": typ == piece_cls.USER_DEFINED, "special": True})
    if typ == piece_cls.USER_DEFINED:
      user.append(re.escape(piece))
  normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]
  if ns.add_dummy_prefix:
    prefix = r"\A(?!(?:" + "|".join(user) + r")\z)" if user else r"\A"
    normalizers.insert(0, {"type": "Replace", "pattern": {"Regex": prefix}, "content": "\u2581"})
  decoders = [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}]
  if ns.add_dummy_prefix:
    decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
  unk = pieces[ts.unk_id][0]
  if ts.model_type == 2:   # BPE: merges in SentencePiece's priority order (higher score first)
    normal = {piece for piece, _, typ in pieces if typ == piece_cls.NORMAL}
    merges = []
    for _, (piece, _, typ) in sorted(enumerate(pieces), key=lambda x: (-x[1][1], x[0])):
      if typ != piece_cls.NORMAL:
        continue
      local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in normal and piece[k:] in normal]
      merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    model = {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": bool(ts.byte_fallback),
             "ignore_merges": False, "vocab": vocab, "merges": [list(m) for m in merges]}
  elif ts.model_type == 1:   # unigram
    model = {"type": "Unigram", "unk_id": ts.unk_id, "vocab": [[piece, score] for piece, score, _ in pieces],
             "byte_fallback": bool(ts.byte_fallback)}
  else:
    raise UserError(f"SentencePiece model type {ts.model_type} cannot be exported; use bpe or unigram")
  post = None
  if ts.bos_id >= 0:   # add_special_tokens=True prepends <s>, as LLaVA's Llama tokenizer does
    bos = pieces[ts.bos_id][0]
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    post = {"type": "TemplateProcessing",
            "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [special, {"Sequence": {"id": "A", "type_id": 0}}, special, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [ts.bos_id], "tokens": [bos]}}}
  return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
          "normalizer": {"type": "Sequence", "normalizers": normalizers}, "pre_tokenizer": None,
          "post_processor": post, "decoder": {"type": "Sequence", "decoders": decoders}, "model": model}


def write_hf_tokenizer(out_dir: str, model_bytes: bytes, image_token: str) -> dict[str, int]:
  """Hugging Face tokenizer files of a SentencePiece model: tokenizer.model + tokenizer.json +
  tokenizer_config.json in `out_dir`; returns the special ids (bos/eos/pad_token_id)."""
  proto = model_pb2.ModelProto()
  proto.ParseFromString(model_bytes)
  ts = proto.trainer_spec
  with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
    f.write(model_bytes)
  with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(_tokenizer_json(proto), f, ensure_ascii=False)

  def piece(i):
    return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

  ids = {"bos_token_id": ts.bos_id, "eos_token_id": ts.eos_id, "pad_token_id": ts.pad_id}
  tok_cfg = {
      # The generic fast tokenizer loads tokenizer.json as written (LlamaTokenizer would rebuild it).
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": piece(ts.bos_id), "eos_token": piece(ts.eos_id), "unk_token": piece(ts.unk_id),
      "pad_token": piece(ts.pad_id), "image_token": image_token, "model_max_length": 1 << 30,
      "clean_up_tokenization_spaces": False, "processor_class": "LlavaProcessor",
  }
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump({k: v for k, v in tok_cfg.items() if v is not None}, f, indent=2, ensure_ascii=False)
  return {k: v for k, v in ids.items() if v >= 0}
