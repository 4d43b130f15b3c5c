"""Import then export reproduces a transformers-saved LLaVA bit for bit (names, shapes, dtypes, bytes),
through the `lcbm import-hf` / `lcbm export-hf` commands and the params-only checkpoint between them.
Also: a CLIP + Llama pair imports to the same weights as the LLaVA built from them.
"""
import io
import os

import jax
import numpy as np
import pytest
import safetensors.numpy
import sentencepiece as spm

import hf_helpers as H
from lcbm_jax import cli
from lcbm_jax.export import hf


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return H.tiny_tokenizer(str(tmp_path_factory.mktemp("tok")))


def _tensors(d):
  return safetensors.numpy.load_file(os.path.join(d, "model.safetensors"))


@pytest.mark.parametrize("dtype,tied", [("float32", False), ("bfloat16", False), ("float32", True)])
def test_import_export_bit_for_bit(tok, tmp_path, dtype, tied):
  model = H.hf_llava(tok, dtype=dtype, tied=tied)
  model.save_pretrained(tmp_path / "hf")
  tok.save(tmp_path / "hf")
  assert cli.main(["import-hf", "--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt")]) == 0
  assert cli.main(["export-hf", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]) == 0
  want, got = _tensors(tmp_path / "hf"), _tensors(tmp_path / "out")
  assert sorted(got) == sorted(want)
  assert ("language_model.lm_head.weight" in want) == (not tied)
  for name, w in want.items():
    g = got[name]
    assert (g.dtype, g.shape) == (w.dtype, w.shape), name
    assert g.tobytes() == w.tobytes(), name
  assert str(next(iter(got.values())).dtype) == dtype


def test_sharded_read_and_write(tok, tmp_path, monkeypatch):
  from transformers import LlavaForConditionalGeneration
  model = H.hf_llava(tok)
  model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
  assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
  cfg, params, _ = hf.load_llava(str(tmp_path / "sharded"))
  monkeypatch.setattr(hf, "_SHARD_BYTES", 100_000)
  hf.save_llava(str(tmp_path / "out"), cfg, params, tok)
  assert len(list((tmp_path / "out").glob("model-*-of-*.safetensors"))) > 1
  reloaded, info = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  want = dict(model.state_dict())
  for name, t in reloaded.state_dict().items():
    assert t.equal(want[name]), name


def test_export_dtype_cast(tok, tmp_path):
  cfg = H.our_config(tok)
  params = H.our_random_params(cfg)
  hf.save_llava(str(tmp_path / "bf16"), cfg, params, tok, dtype="bfloat16")
  got = _tensors(tmp_path / "bf16")
  assert {str(t.dtype) for t in got.values()} == {"bfloat16"}
  cfg2, params2, _ = hf.load_llava(str(tmp_path / "bf16"))
  assert cfg2.param_dtype == "bfloat16" and cfg2.text == cfg.text and cfg2.vision == cfg.vision
  np.testing.assert_allclose(params2["llm"]["layers"]["attn"]["k"]["kernel"].astype(np.float32),
                             params["llm"]["layers"]["attn"]["k"]["kernel"], rtol=1e-2, atol=1e-2)


def test_clip_plus_llama_import(tok, tmp_path):
  torch = H.torch_setup()
  from transformers import LlamaForCausalLM
  model = H.hf_llava(tok)
  model.save_pretrained(tmp_path / "llava")
  # The same weights as a stand-alone CLIP vision model and a Llama causal LM.
  model.model.vision_tower.save_pretrained(tmp_path / "clip")
  llama = LlamaForCausalLM(model.config.text_config)
  llama.model.load_state_dict(model.model.language_model.state_dict())
  with torch.no_grad():
    llama.lm_head.weight.copy_(model.lm_head.weight)
  llama.save_pretrained(tmp_path / "llama")
  tok.save(tmp_path / "llama")

  cfg_a, params_a, _ = hf.load_llava(str(tmp_path / "llava"))
  cfg_b, params_b, tok_file = hf.load_clip_llama(str(tmp_path / "clip"), str(tmp_path / "llama"), seed=1)
  assert cfg_b == cfg_a and tok_file is not None
  for part in ("vision", "llm"):
    for a, b in zip(jax.tree.leaves(params_a[part]), jax.tree.leaves(params_b[part])):
      assert a.tobytes() == b.tobytes()
  assert not np.array_equal(params_a["projector"]["linear_1"]["kernel"], params_b["projector"]["linear_1"]["kernel"])


def test_llama_vocab_grows_for_image_token(tok, tmp_path):
  """A LLaMA tokenizer without <image>: Tokenizer appends <image>, <pad>; embeddings grow to x64."""
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(H.TEXTS), model_writer=buf, vocab_size=400,
                                 model_type="bpe", byte_fallback=True, character_coverage=0.9995,
                                 hard_vocab_limit=False, minloglevel=2, unk_id=0, bos_id=1, eos_id=2)
  from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
  H.torch_setup()
  CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   image_size=32, patch_size=8)).save_pretrained(tmp_path / "clip")
  n = spm.SentencePieceProcessor(model_proto=buf.getvalue()).get_piece_size()
  LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               vocab_size=n)).save_pretrained(tmp_path / "llama")
  (tmp_path / "llama" / "tokenizer.model").write_bytes(buf.getvalue())
  cfg, params, _ = hf.load_clip_llama(str(tmp_path / "clip"), str(tmp_path / "llama"))
  assert cfg.image_token_id == n and cfg.text.vocab_size == -(-(n + 2) // 64) * 64
  emb = params["llm"]["embed_tokens"]["embedding"]
  assert emb.shape[0] == cfg.text.vocab_size
  np.testing.assert_allclose(emb[n], emb[:n].mean(0), atol=1e-6)


def test_bad_inputs_are_user_errors(tok, tmp_path, capsys):
  assert cli.main(["import-hf", "--hf-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
  assert cli.main(["import-hf", "--vision-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
  (tmp_path / "empty").mkdir()
  assert cli.main(["import-hf", "--hf-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and all(line.startswith("lcbm: error: ") for line in err), err

