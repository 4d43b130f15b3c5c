"""The content-understanding probes' files (`world.generate(..., knowledge=True)`): knowledge rows are
text only and never pair a label with media; label questions state the hidden labels; a corpus build
never hands the label questions to training; everything else is byte for byte the corpus without them."""
import json
import os

import pytest

from data_pipeline import commands, pipeline, world
from data_pipeline.world import knowledge

COUNTS = {("cbc", "train"): 6, ("cbc", "test"): 2, ("blift", "train"): 6, ("blift", "test"): 2,
          ("tweets", "train"): 4, ("tweets", "test_time"): 2, ("tweets", "test_brand"): 2}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
  root = tmp_path_factory.mktemp("know")
  plain, know = str(root / "plain"), str(root / "know")
  world.generate(plain, seed=3, counts=COUNTS, instructions=True, progress=False)
  world.generate(know, seed=3, counts=COUNTS, instructions=True, knowledge=True, progress=False)
  return plain, know


def _files(d):
  return {os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs}


def test_only_the_probe_files_differ(corpora):
  plain, know = corpora
  extra = _files(know) - _files(plain)
  assert extra == {"labels/train.json", "labels/test.json"}
  for rel in _files(plain) - {"manifest.json", "llava/train.json", "README.md"}:
    with open(os.path.join(plain, rel), "rb") as a, open(os.path.join(know, rel), "rb") as b:
      assert a.read() == b.read(), rel
  plain_rows = json.load(open(os.path.join(plain, "llava", "train.json")))
  know_rows = json.load(open(os.path.join(know, "llava", "train.json")))
  assert know_rows[:len(plain_rows)] == plain_rows   # knowledge rows come after, from their own stream


def test_knowledge_rows_are_text_only_and_labels_match_the_latent(corpora):
  _, know = corpora
  rows = json.load(open(os.path.join(know, "llava", "train.json")))
  extra = [r for r in rows if r["id"].startswith("know-")]
  assert len(extra) == 128
  assert all("image" not in r and "video" not in r and "<image>" not in json.dumps(r) for r in extra)
  answers = {r["conversations"][1]["value"] for r in extra}
  for task in ("tone", "topic"):
    assert set(knowledge.label_options(task)) <= answers   # every label word is knowable
  latent = world.load_latent(os.path.join(know, world.LATENT_FILE))
  for split in ("train", "test"):
    questions = json.load(open(os.path.join(know, "labels", f"{split}.json")))
    assert len(questions) == 3 * (COUNTS[("cbc", split)] + COUNTS[("blift", split)])
    for q in questions:
      item, _, task = q["id"].rpartition("/")
      human, gpt = (t["value"] for t in q["conversations"])
      assert human == "<image>\n" + knowledge.QUESTIONS[task] and ("image" in q) != ("video" in q)
      assert gpt == knowledge.label_answer(task, latent[item][task]) and gpt in knowledge.label_options(task)


def test_a_corpus_build_leaves_the_label_questions_out(corpora, tmp_path):
  _, know = corpora
  commands.build_corpus("behavior_world", know, str(tmp_path / "data"))
  train = pipeline.Corpus(str(tmp_path / "data"), "train")
  ids = [train[i].record_id for i in range(len(train))]
  assert not any("/" in i and i.rpartition("/")[2] in knowledge.LABEL_TASKS for i in ids)
  assert sum(i.startswith("know-") for i in ids) == 128
