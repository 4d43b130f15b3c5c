"""SentencePiece tokenizer for lcbm: train on a corpus, load LLaMA models, encode verbalized segments.

Id conventions are LLaMA's, so an exported `tokenizer.model` loads in Hugging Face's
`LlamaTokenizer` with the same ids: `<unk>` = 0, `<s>` = 1, `</s>` = 2. Padding uses a dedicated
`<pad>` control piece (never produced from text); `<image>` and the role markers are
user-defined pieces, so they are always one id and never split or merged with neighbours.

- `Tokenizer.train` (BPE, byte fallback, identity normalisation, digits split) puts `<pad>` at 3,
  `<image>` at 4 and the role markers after it.
- `Tokenizer.load` of an existing LLaMA `tokenizer.model` keeps every id and appends what the model
  lacks at the end: `<image>` then `<pad>` (ids 32000 and 32001 for LLaMA, as in LLaVA-1.5 on HF).

Identity normalisation without whitespace folding makes `decode(encode(x)) == x` for any text.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from lcbm_jax.errors import UserError

IMAGE_PIECE = "<image>"
PAD_PIECE = "<pad>"
# Role markers of the conversation templates (BLIFT, LLaVA-style); one piece each.
ROLE_PIECES = ("USER:", "ASSISTANT:", "SYSTEM:")
MODEL_FILENAME = "tokenizer.model"

_Piece = model_pb2.ModelProto.SentencePiece


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
    """Writes `out_dir/tokenizer.model`; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MODEL_FILENAME)
    with open(path + ".tmp", "wb") as f:
      f.write(self._proto_bytes)
    os.replace(path + ".tmp", path)
    return path

  @property
  def model_proto(self) -> bytes:
    return self._proto_bytes

  # -- encoding ----------------------------------------------------------------------------

  def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    """Token ids of `text`; each "<image>" becomes the single id `image_id`."""
    return self._sp.encode(text, add_bos=add_bos, add_eos=add_eos)

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; control ids (bos, eos, pad) decode to nothing."""
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def encode_segments(self, texts: Sequence[str], flags: Sequence[bool]) -> tuple[list[int], list[bool]]:
    """Encodes the concatenation of `texts` as one string; returns ids and a flag per id.

    Encoding the joined text (not each segment apart) gives the same ids as encoding the whole
    conversation, so no spurious word-start pieces appear at segment boundaries. A piece takes the
    flag True if any of its bytes comes from a segment flagged True (a target segment).
    """
    joined = "".join(texts)
    flag_of_byte = []
    for text, flag in zip(texts, flags):
      flag_of_byte.extend([bool(flag)] * len(text.encode("utf-8")))
    proto = self._sp.encode(joined, return_type="proto")
    ids, out_flags = [], []
    for p in proto.pieces:
      if p.end > p.begin:
        flag = any(flag_of_byte[p.begin:p.end])
      else:  # zero-width: the dummy prefix or a leading byte-fallback piece; it belongs with what follows
        flag = flag_of_byte[p.begin] if p.begin < len(flag_of_byte) else bool(flag_of_byte and flag_of_byte[-1])
      ids.append(p.id)
      out_flags.append(flag)
    return ids, out_flags


def expand_image_tokens(ids: Sequence[int], image_id: int, num_image_tokens: int) -> list[int]:
  """Replaces each `image_id` in `ids` by `num_image_tokens` copies (one per image patch feature)."""
  out: list[int] = []
  for i in ids:
    if i == image_id:
      out.extend([image_id] * num_image_tokens)
    else:
      out.append(i)
  return out
