"""Tokenizer: LLaMA id conventions, exact round trip, parity with sentencepiece and HF LlamaTokenizer."""
import io

import numpy as np
import pytest
import sentencepiece as spm

from data_pipeline import tokenizer as tokenizer_lib
from data_pipeline.codec import Codec, expand_image_tokens
from data_pipeline.tokenizer import Tokenizer
from lcbm_jax.errors import UserError

CORPUS = [
    f"Video: Cooking show {i}. Channel: Brand{i % 7} ({i}k subscribers).\nScene 1: <image> "
    f"{{ASR: we add {i * 3} grams of flour, OCR: step {i}, Replays: {i % 101}}}\n"
    f"USER: predict the likes.\nASSISTANT: Likes-per-View: {i % 9}.{i % 10}%, Views: {i} thousand"
    for i in range(400)
] + ["Ünïcödé çafé naïve — 日本語のテキスト 🎉 emoji", "tabs\tand\nnewlines  double  spaces"]

ROUND_TRIP = [
    "", " ", "  leading spaces", "trailing spaces   ", "a\tb\nc\r\nd", "digits 0123456789 3.14159 -42",
    "Ünïcödé çafé naïve", "日本語 한국어 العربية עברית", "🎉🔥👍🏽 zero-width\u200bjoiner", "<image><image> x<image>y",
    "USER: hi\nASSISTANT: hello", "never seen: ʕ•ᴥ•ʔ ∮ ⨌ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return Tokenizer.train(CORPUS, vocab_size=600, out_dir=tmp_path_factory.mktemp("tok"))


def test_llama_id_conventions(tok):
  assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id, tok.image_id) == (0, 1, 2, 3, 4)
  assert tok.id_to_piece(1) == "<s>" and tok.id_to_piece(2) == "</s>" and tok.id_to_piece(3) == "<pad>"
  # The leading piece is LLaMA's dummy-prefix "▁"; the placeholder itself is one id.
  assert tok.encode("<image>")[1:] == [tok.image_id]
  assert tok.encode("x<image><image>y").count(tok.image_id) == 2
  for role in tokenizer_lib.ROLE_PIECES:
    assert tok.encode("\n" + role).count(tok._sp.piece_to_id(role)) == 1, role
  # <image> is never merged with neighbours.
  ids = tok.encode("Scene 1:<image>{ASR")
  assert ids.count(tok.image_id) == 1


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_exact(tok, text):
  assert tok.decode(tok.encode(text)) == text


def test_parity_with_sentencepiece(tok, tmp_path):
  path = tok.save(tmp_path)
  sp = spm.SentencePieceProcessor(model_file=path)
  for text in ROUND_TRIP + CORPUS[:20]:
    assert tok.encode(text, add_bos=True, add_eos=True) == sp.encode(text, add_bos=True, add_eos=True)
    assert tok.decode(tok.encode(text)) == sp.decode(sp.encode(text))
  assert Tokenizer.load(tmp_path).model_proto == tok.model_proto


def test_hf_llama_tokenizer_loads_saved_model(tok, tmp_path):
  transformers = pytest.importorskip("transformers")
  tok.save(tmp_path)
  hf = transformers.LlamaTokenizer.from_pretrained(str(tmp_path))
  assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
  assert hf.convert_tokens_to_ids("<image>") == tok.image_id
  assert hf.convert_tokens_to_ids("<pad>") == tok.pad_id
  # HF adds no dummy-prefix piece before a leading space or a leading special piece; compare the rest.
  for text in [t for t in ROUND_TRIP + CORPUS[:20] if t and not t[0].isspace() 
               and not t.startswith((tokenizer_lib.IMAGE_PIECE, *tokenizer_lib.ROLE_PIECES))]:
    assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text), text


def test_load_llama_model_appends_image_and_pad(tmp_path):
  # A LLaMA-style model as Meta ships it: no <image>, no pad piece (pad_id = -1).
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=500, model_type="bpe", byte_fallback=True,
      split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2)
  (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
  sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
  tok = Tokenizer.load(tmp_path / "tokenizer.model")
  n = sp.get_piece_size()
  assert (tok.image_id, tok.pad_id, tok.vocab_size) == (n, n + 1, n + 2)
  for text in CORPUS[:20]:
    plain = text.replace("<image>", "")
    assert tok.encode(plain) == sp.encode(plain)
  ids = tok.encode("see <image> here")
  assert ids.count(tok.image_id) == 1
  assert tok.decode(ids) == "see <image> here"


def test_codec_segments_flags_and_matches_whole_text(tok):
  texts = ["USER: <image> Scene 1: {Replays: [MASK]}\nASSISTANT: ", "Scene 1: {Replay: 60%}"]
  enc = Codec(tok, 1).encode_segments(texts, [False, True])
  ids, flags = enc.ids[1:-1].tolist(), enc.flags[1:-1].tolist()   # without <s> and </s>
  assert ids == tok.encode("".join(texts))
  n_prompt = flags.index(True)
  assert not any(flags[:n_prompt]) and all(flags[n_prompt:])
  assert tok.decode(ids[:n_prompt]) == texts[0]
  assert tok.decode(ids[n_prompt:]) == texts[1]


def test_expand_image_tokens():
  ids = [1, 7, 4, 8, 4, 2]
  assert expand_image_tokens(ids, 4, 3).tolist() == [1, 7, 4, 4, 4, 8, 4, 4, 4, 2]
  assert np.sum(np.array(expand_image_tokens(ids, 4, 5)) == 4) == 10


def test_bad_inputs_raise_user_error(tmp_path):
  with pytest.raises(UserError):
    Tokenizer.train(CORPUS, vocab_size=100)
  with pytest.raises(UserError):
    Tokenizer.load(tmp_path / "missing")
  (tmp_path / "tokenizer.model").write_bytes(b"not a model")
  with pytest.raises(UserError):
    Tokenizer.load(tmp_path)
