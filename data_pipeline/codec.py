"""The codec: the one place where text becomes token ids and generated ids become text again.

Training, evaluation, `lcbm predict` and `lcbm score` all go through `Codec`, so a prompt is
tokenized the same way everywhere:

  codec = Codec(tokenizer, num_image_tokens=256)
  enc = codec.encode(verbalized)     # training: ids + loss flags; enc.prompt_ids / enc.target_ids for eval
  ids = codec.prompt_ids(text)       # <s> + text, each <image> expanded (predict, probes)
  prompt, cont = codec.split(prompt_text, continuation_text)   # score
  cont = codec.continuation(prompt_text, label, eos=True)      # option scoring
  text = codec.decode(generated_ids)

Layout of an encoded sample: `<s> prompt target </s>` (`<s>` is whatever the tokenizer puts before a
text, `prefix_ids`: LLaMA's `<s>`, or nothing). With a conversation format (`data_pipeline.chat`, e.g.
LLaVA-1.5's `vicuna_v1`) the segments are first rendered as its turns, each answer ending in `</s>`. The segments are encoded as one joined
text (not each apart), so no spurious word-start piece appears at a segment boundary and the ids
equal those of the whole conversation. A piece is a target piece when any of its bytes comes from a
target segment; `</s>` is learned (the model must learn to stop) when there is a target at all.
Each `<image>` id then becomes `num_image_tokens` copies, one per patch feature of its image.

The tokenizer is anything with the `tokenizer.TextTokenizer` interface (encode with byte offsets,
decode, special ids); nothing here knows which library is behind it.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from data_pipeline import chat
from data_pipeline.tokenizer import TextTokenizer
from data_pipeline.verbalize import Verbalized


@dataclasses.dataclass(frozen=True)
class Encoded:
  """One sample: `ids` = <s> prompt target </s> with images expanded; `flags` True on the target
  tokens (and </s> when there is a target)."""
  ids: np.ndarray       # int32[n]
  flags: np.ndarray     # bool[n]

  @property
  def prompt_len(self) -> int:
    """Tokens of prompt; the rest is target. With no target, everything but </s> is prompt (the model
    is asked to continue it)."""
    return int(np.argmax(self.flags)) if self.flags.any() else len(self.ids) - 1

  @property
  def prompt_ids(self) -> np.ndarray:
    """int32[p]: <s> + prompt, what a model is fed to continue it (exactly the training prefix)."""
    return self.ids[:self.prompt_len]

  @property
  def target_ids(self) -> np.ndarray:
    """int32[m]: the target tokens + </s>."""
    return self.ids[self.prompt_len:]


def expand_image_tokens(ids: Sequence[int], image_id: int, num_image_tokens: int) -> np.ndarray:
  """int32 ids with each `image_id` repeated `num_image_tokens` times (one per image patch feature)."""
  ids = np.asarray(ids, np.int32)
  return np.repeat(ids, np.where(ids == image_id, num_image_tokens, 1))


class Codec:
  """Text <-> ids for one (tokenizer, vision tower) pair."""

  def __init__(self, tokenizer: TextTokenizer, num_image_tokens: int, conversation: str = "plain"):
    if num_image_tokens < 1:
      raise ValueError(f"num_image_tokens={num_image_tokens} must be >= 1")
    self.tokenizer, self.num_image_tokens = tokenizer, num_image_tokens
    self.conversation = chat.check_format(conversation)

  # -- encoding ----------------------------------------------------------------------------

  def encode(self, v: Verbalized) -> Encoded:
    """A verbalized example: training ids and loss flags, split into prompt and target."""
    return self.encode_segments([s.text for s in v.segments], [s.is_target for s in v.segments])

  def encode_segments(self, texts: Sequence[str], is_target: Sequence[bool]) -> Encoded:
    """`<s>` + the joined texts + `</s>`, flags per token, `<image>` expanded (see the module doc)."""
    tok = self.tokenizer
    texts, is_target, has_eos = chat.render(self.conversation, texts, is_target, tok.id_to_piece(tok.eos_id))
    ids, flags = self._pieces(texts, is_target)
    prefix = list(tok.prefix_ids)
    if has_eos:   # the format ended the last answer with </s> itself
      ids = np.array([*prefix, *ids], np.int32)
      flags = np.array([False] * len(prefix) + flags, bool)
    else:
      ids = np.array([*prefix, *ids, tok.eos_id], np.int32)
      flags = np.array([False] * len(prefix) + [*flags, any(flags)], bool)
    reps = np.where(ids == tok.image_id, self.num_image_tokens, 1)
    return Encoded(np.repeat(ids, reps), np.repeat(flags, reps))

  def _pieces(self, texts: Sequence[str], is_target: Sequence[bool]) -> tuple[list[int], list[bool]]:
    """Ids of the joined texts and, per id, whether any of its bytes is in a target segment."""
    if not getattr(self.tokenizer, "offsets_exact", True):
      return self._pieces_by_prefix(texts, is_target)
    flag_of_byte: list[bool] = []
    for text, flag in zip(texts, is_target):
      flag_of_byte.extend([bool(flag)] * len(text.encode("utf-8")))
    ids, flags = [], []
    for i, begin, end in self.tokenizer.encode_with_offsets("".join(texts)):
      if end > begin:
        flag = any(flag_of_byte[begin:end])
      else:  # zero-width: the dummy prefix or a leading byte-fallback piece; it belongs with what follows
        flag = flag_of_byte[begin] if begin < len(flag_of_byte) else bool(flag_of_byte and flag_of_byte[-1])
      ids.append(i)
      flags.append(flag)
    return ids, flags

  def _pieces_by_prefix(self, texts: Sequence[str], is_target: Sequence[bool]) -> tuple[list[int], list[bool]]:
    """`_pieces` without offsets: at each boundary between segments, the ids the text up to it shares
    with the whole text's ids are before it; the first id after those straddles the boundary when the
    text up to it does not end there (then it counts as target if either side is)."""
    joined = "".join(texts)
    ids = list(self.tokenizer.encode(joined))
    flags = [bool(is_target[-1])] * len(ids) if texts else []
    cut, pos = 0, 0
    for k in range(len(texts) - 1):
      pos += len(texts[k])
      if bool(is_target[k]) == bool(is_target[k + 1]):
        continue
      head = self.tokenizer.encode(joined[:pos])
      shared = next((j for j, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
      shared = max(shared, cut)
      flags[cut:shared] = [bool(is_target[k])] * (shared - cut)
      if len(head) > shared and shared < len(ids):   # the next id holds bytes of both sides
        flags[shared] = bool(is_target[k]) or bool(is_target[k + 1])
        shared += 1
      cut = shared
    flags[cut:] = [bool(is_target[-1])] * (len(ids) - cut) if texts else []
    return ids, flags

  def prompt_ids(self, text: str) -> np.ndarray:
    """int32: `<s>` + `text`, each `<image>` expanded: a prompt to generate from (in a conversation
    format, `text` is the user's turn and the prompt ends with "ASSISTANT:")."""
    return self.encode_segments([text], [False]).prompt_ids

  def split(self, prompt_text: str, continuation_text: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt ids, continuation ids) of `prompt_text + continuation_text` encoded as one text; a
    piece that straddles the join belongs to the continuation. No `</s>` after the continuation."""
    enc = self.encode_segments([prompt_text, continuation_text], [False, True])
    return enc.prompt_ids, enc.target_ids[:-1]

  def continuation(self, prompt_text: str, text: str, *, eos: bool) -> list[int]:
    """Ids of `text` as they come after `prompt_text` (option scoring); + `</s>` when `eos` (the option
    is the whole answer, not the start of a longer one)."""
    target = self.encode_segments([prompt_text, text], [False, True]).target_ids
    return [int(t) for t in (target if eos else target[:-1])]

  def text_ids(self, text: str) -> list[int]:
    """Plain ids of `text` (no `<s>`, no expansion), e.g. to find the id of a digit."""
    return list(self.tokenizer.encode(text))

  def num_images(self, ids: Sequence[int]) -> int:
    """`<image>` placeholders in expanded ids."""
    return int(np.sum(np.asarray(ids) == self.tokenizer.image_id)) // self.num_image_tokens

  # -- decoding ----------------------------------------------------------------------------

  def decode(self, ids: Sequence[int], *, show_unknown: bool = False) -> str:
    """Text of generated ids. A model vocabulary may be padded past the tokenizer's (a multiple of
    64); such ids have no piece: dropped, or shown as the unknown piece with `show_unknown`."""
    tok = self.tokenizer
    if show_unknown:
      return tok.decode([int(t) if 0 <= t < tok.vocab_size else tok.unk_id for t in ids])
    return tok.decode([int(t) for t in ids if 0 <= t < tok.vocab_size])
