"""The codec: training ids are evaluation's prompt + target for every task and image count, the loss
falls on exactly the target tokens, and the ids are those of the whole text (SentencePiece itself)."""
import numpy as np
import pytest

import pipeline_helpers as helpers
from data_pipeline import pipeline, verbalize
from data_pipeline.codec import Codec, expand_image_tokens
from data_pipeline.tokenizer import Tokenizer
from lcbm_jax.model.presets import CLIP_MEAN, CLIP_STD

N_IMG = 3
COUNTS = {("cbc", "train"): 8, ("cbc", "test"): 6, ("blift", "train"): 6, ("blift", "test"): 4,
          ("tweets", "train"): 24, ("tweets", "test_time"): 6, ("tweets", "test_brand"): 2}
SPLIT = {"likes_high_low": "test_time", "tweet_generation": "test_time"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  data_dir, tok_dir = helpers.build_tiny(str(tmp_path_factory.mktemp("codec")), COUNTS)
  return data_dir, Tokenizer.load(tok_dir)


# instruction: multi-turn conversations have target runs between prompt runs (no single prompt + target);
# tests/test_instruction_data.py checks its loss flags turn by turn. The tiny corpus has no such rows.
@pytest.mark.parametrize("task", [t for t in verbalize.TASKS if t != "instruction"])
@pytest.mark.parametrize("content_only", [False, True])
def test_training_ids_are_prompt_plus_target_for_0_1_and_several_images(corpus, task, content_only):
  data_dir, tok = corpus
  codec = Codec(tok, N_IMG)
  tokenize = pipeline.Tokenize(tok, N_IMG, seq_len=1 << 14)
  cfg = helpers.config(data_dir, "unused", seq_len=1 << 14, max_images=4, num_image_tokens=N_IMG, pack=False,
                       image_size=8)
  seen_images = set()
  for max_images in (0, 1, 4):
    for e in pipeline.eval_examples(data_dir, SPLIT.get(task, "test"), task, codec=codec, image_mean=CLIP_MEAN,
                                    image_std=CLIP_STD, image_size=8, max_images=max_images, max_examples=None,
                                    content_only=content_only):
      v = e.verbalized
      n = len(v.media)
      seen_images.add(min(n, 2))
      # The training transform (what the model learns from) against the evaluation path.
      elem = tokenize.map({"quarantine": "", "verbalized": v})
      tokens, flags = elem["tokens"], elem["flags"]
      np.testing.assert_array_equal(tokens, np.concatenate([e.prompt_ids, e.target_ids]))
      np.testing.assert_array_equal(flags, np.arange(len(tokens)) >= len(e.prompt_ids))
      assert len(e.target_ids) >= 2 and e.target_ids[-1] == tok.eos_id   # a non-empty target, then </s>
      # Against SentencePiece on the whole text: <s> text </s>, each <image> expanded in place.
      whole = [tok.bos_id, *tok.encode(v.text), tok.eos_id]
      np.testing.assert_array_equal(tokens, expand_image_tokens(whole, tok.image_id, N_IMG))
      assert int(np.sum(e.prompt_ids == tok.image_id)) == N_IMG * n and tok.image_id not in e.target_ids
      assert tok.decode(e.target_ids).strip() == v.target.strip()
      # In a batch the loss falls on exactly the positions whose next token is a target token.
      elem.update(task_id=0, sample_id=1, images=np.zeros((n, 8, 8, 3), np.float32))
      batch = pipeline.assemble([[[elem]]], cfg, tok.pad_id, tok.image_id)
      m = len(tokens)
      np.testing.assert_array_equal(batch["targets"][0, :m - 1], tokens[1:])
      np.testing.assert_array_equal(batch["loss_mask"][0, :m - 1] == 1, np.arange(1, m) >= len(e.prompt_ids))
      assert batch["loss_mask"][0].sum() == len(e.target_ids)
  videos = task in ("behavior_simulation", "kbft", "content_simulation_choice", "behavior_understanding")
  assert seen_images >= ({0, 1, 2} if videos else {0, 1}), seen_images


def test_split_and_continuation_follow_the_joined_text(corpus):
  """score/option scoring: a piece straddling the prompt/continuation join belongs to the continuation,
  and the ids are those of the whole text."""
  _, tok = corpus
  codec = Codec(tok, N_IMG)
  for prompt, cont in (("<image> describe the red", " circle"), ("Answer:", "18"), ("Tweet: ", "Our new ball"),
                       ("x", "y z"), ("Scene 1: <image> {Replays:", " 60}")):
    p, c = codec.split(prompt, cont)
    whole = expand_image_tokens([tok.bos_id, *tok.encode(prompt + cont)], tok.image_id, N_IMG)
    np.testing.assert_array_equal(np.concatenate([p, c]), whole)
    assert len(c) >= 1 and tok.decode(c).strip() == cont.strip()
    assert codec.continuation(prompt, cont, eos=True) == [*c.tolist(), tok.eos_id]
    assert codec.continuation(prompt, cont, eos=False) == c.tolist()
  np.testing.assert_array_equal(codec.prompt_ids("<image> hi <image>"),
                                expand_image_tokens(tok.encode("<image> hi <image>", add_bos=True), tok.image_id, N_IMG))
  assert codec.num_images(codec.prompt_ids("<image> hi <image>")) == 2


def test_decode_drops_or_shows_ids_past_the_tokenizer(corpus):
  _, tok = corpus
  codec = Codec(tok, N_IMG)
  ids = tok.encode("views and likes")
  assert codec.decode([*ids, tok.vocab_size + 3]) == "views and likes"
  assert codec.decode([*ids, tok.vocab_size + 3], show_unknown=True) == tok.decode([*ids, tok.unk_id])
