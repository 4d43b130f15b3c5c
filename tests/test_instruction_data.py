"""Instruction data: LLaVA conversation JSON through the reader, the builder and the `instruction`
template; loss only on gpt turns; a 1:1 mix with a behavior task; the embedded corpus's own rows."""
import dataclasses
import collections
import json
import os
import shutil

import numpy as np

import pipeline_helpers as helpers
from data_pipeline import commands, pipeline, sources, verbalize, world
from data_pipeline import records as rec
from data_pipeline.codec import Codec
from data_pipeline.sources import behavior_world, llava_json
from hf_helpers import tiny_tokenizer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
LLAVA = os.path.join(FIXTURES, "llava.json")
# tests/fixtures/llava.json: row id -> reason ("clean" rows build). Two clean rows share the id "caption".
EXPECTED = {
    "caption": "clean", "no_placeholder": "clean", "multi_turn": "clean", "sharegpt": "clean", "video": "clean",
    "4711": "clean",
    "no_conversations": "missing_field", "conversations_not_a_list": "wrong_type",
    "conversations_empty": "missing_field", "turn_not_an_object": "wrong_type", "value_not_text": "wrong_type",
    "system_turn": "bad_role", "gpt_first": "bad_turn_order", "two_humans": "bad_turn_order",
    "ends_with_human": "bad_turn_order", "empty_answer": "empty_text",
    "two_placeholders_one_image": "image_token_mismatch", "placeholder_without_media": "image_token_mismatch",
    "placeholder_in_answer": "image_token_mismatch", "missing_image": "missing_media",
    "image_and_video": "wrong_type", "llava.json:22": "malformed_json",
}
CLEAN = sorted(k for k, v in EXPECTED.items() if v == "clean") + ["caption"]


def _read_fixture():
  items = list(llava_json.read(LLAVA))
  got = {}
  for x in items:
    got.setdefault(x.record_id, set()).add(getattr(x, "reason", "clean"))
  return items, got


def test_llava_rows_quarantined_with_reasons():
  items, got = _read_fixture()
  assert got == {k: {v} for k, v in EXPECTED.items()}
  assert sorted(x.record_id for x in items if isinstance(x, rec.ContentBehaviorRecord)) == sorted(CLEAN)
  for q in items:
    if isinstance(q, rec.Quarantined):
      assert q.reason in rec.REASONS and q.detail and q.location.startswith(LLAVA + ":")
  assert dict(sources.reason_counts(items)) == collections.Counter(v for v in EXPECTED.values() if v != "clean")


def test_llava_rows_become_records():
  clean = {}
  for r in llava_json.read(LLAVA):
    if isinstance(r, rec.ContentBehaviorRecord):
      clean.setdefault(r.record_id, []).append(r)
  first = clean["caption"][0]
  assert first == rec.ContentBehaviorRecord(
      "caption", "llava_json", rec.Content(media=(rec.MediaRef("media/red_ball.png", "image"),),
                                           conversation=(("human", "<image>\nDescribe the image briefly."),
                                                         ("gpt", "A red ball."))))
  # A one-image row without a placeholder gets "<image>\n" first, as LLaVA does; user/assistant are read as roles.
  assert clean["no_placeholder"][0].content.conversation[0] == ("human", "<image>\nWhat colour is the ball?")
  assert [t[0] for t in clean["caption"][1].content.conversation] == ["human", "gpt"]
  assert clean["sharegpt"][0].content.media == ()
  # A video: one <image> (Video-LLaVA's <video> read as it), one empty scene per keyframe.
  video = clean["video"][0]
  assert video.content.media == (rec.MediaRef("media/clip.gif", "video"),) and len(video.content.scenes) == 2
  assert video.content.conversation[0] == ("human", "<image>\nWhere does the box move?")
  assert len(clean["4711"][0].content.media) == 2
  # No behavior task takes an instruction record; the instruction task takes nothing else.
  for r in (x for rs in clean.values() for x in rs):
    assert [t for t in verbalize.TASKS if verbalize.applies(r, t, verbalize.Context())] == ["instruction"]


def test_jsonl_rows_and_whole_file_defects(tmp_path):
  good = {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
  path = tmp_path / "train.jsonl"
  with open(path, "wb") as f:
    f.write(json.dumps(good).encode() + b"\n\n")
    f.write(b'{"id": "broken", "conversations": [\n')
    f.write(json.dumps({**good, "id": "caf\u00e9"}).encode("utf-8").replace(b"\\u00e9", b"\xff") + b"\n")
    f.write(json.dumps({**good, "id": "b", "image": "gone.png"}).encode() + b"\n")
  got = {x.record_id: getattr(x, "reason", "clean") for x in llava_json.read(str(path))}
  assert got == {"a": "clean", "train.jsonl:3": "malformed_json", "train.jsonl:4": "invalid_utf8",
                 "b": "missing_media"}
  (tmp_path / "obj.json").write_text(json.dumps(good))
  (tmp_path / "cut.json").write_text(json.dumps([good])[:-3])
  for name in ("obj.json", "cut.json"):
    (q,) = list(llava_json.read(str(tmp_path / name)))
    assert q.reason == "unreadable_file", name
  # A folder reads every .json and .jsonl file in it.
  assert len(list(sources.read("llava_json", str(tmp_path)))) == 6


def test_build_keeps_the_conversations(tmp_path):
  (report,) = commands.build_corpus("llava_json", LLAVA, str(tmp_path / "built"))
  # The fixture repeats the id "caption": the build keeps the first row with it (duplicate_id).
  dups = len(CLEAN) - len(set(CLEAN))
  assert report["splits"] == {"train": {"records": len(set(CLEAN)),
                                        "quarantined": len(EXPECTED) - len(set(CLEAN)) + dups}}
  assert {r: e["count"] for r, e in report["reasons"].items()} == dict(
      collections.Counter([v for v in EXPECTED.values() if v != "clean"] + ["duplicate_id"] * dups))
  corpus = pipeline.Corpus(str(tmp_path / "built"), "train")
  originals, seen = [], set()
  for r in llava_json.read(LLAVA):
    if isinstance(r, rec.ContentBehaviorRecord) and r.record_id not in seen:
      seen.add(r.record_id)
      originals.append(r)
  built = [corpus[i] for i in range(len(corpus))]
  assert [b.content.conversation for b in built] == [r.content.conversation for r in originals]
  for b, r in zip(built, originals):
    assert b.content.media == tuple(rec.MediaRef(m.path, m.kind, open(os.path.join(FIXTURES, m.path), "rb").read())
                                    for m in r.content.media)
  # Data built before conversations existed reads back with none.
  old = rec.ContentBehaviorRecord("x", "jsonl", rec.Content(title="t")).to_dict()
  del old["content"]["conversation"]
  assert rec.ContentBehaviorRecord.from_dict(old).content.conversation == ()


def _instruction(record, max_images=4):
  return verbalize.verbalize(record, "instruction", rng=np.random.default_rng(0), max_images=max_images)


def _flagged_runs(enc):
  """The target ids as contiguous runs (one per gpt turn; the last one ends with </s>)."""
  runs, cur = [], []
  for i, f in zip(enc.ids.tolist(), enc.flags.tolist()):
    if f:
      cur.append(i)
    elif cur:
      runs.append(cur)
      cur = []
  return runs + ([cur] if cur else [])


def test_segments_alternate_and_loss_falls_on_gpt_turns_only():
  tok = tiny_tokenizer()
  codec = Codec(tok, num_image_tokens=3)
  records = {r.record_id: r for r in llava_json.read(LLAVA) if isinstance(r, rec.ContentBehaviorRecord)}
  multi = _instruction(records["multi_turn"])
  assert multi.segments == (
      verbalize.Segment("What is shown here?\n<image>", False), verbalize.TURN_SEPARATOR,
      verbalize.Segment("A ball on a white background.", True), verbalize.TURN_SEPARATOR,
      verbalize.Segment("What colour is it?", False), verbalize.TURN_SEPARATOR,
      verbalize.Segment("It is red.", True), verbalize.TURN_SEPARATOR,
      verbalize.Segment("Is it round?", False), verbalize.TURN_SEPARATOR,
      verbalize.Segment("Yes, it is round.", True))
  assert multi.text == ("What is shown here?\n<image>\nA ball on a white background.\nWhat colour is it?\n"
                        "It is red.\nIs it round?\nYes, it is round.")
  assert multi.template_version == verbalize.VERSIONS["instruction"] and multi.parse(multi.target) == multi.answer
  for rid, r in records.items():
    for max_images in (0, 1, 4):
      v = _instruction(r, max_images)
      answers = [t.strip() for role, t in r.content.conversation if role == "gpt"]
      assert [s.text for s in v.segments if s.is_target] == answers
      assert v.text.count("<image>") == len(v.media) <= max_images
      enc = codec.encode(v)
      runs = _flagged_runs(enc)
      assert [tok.decode(run) for run in runs] == answers, rid   # exactly the gpt turns' text ...
      assert runs[-1][-1] == tok.eos_id and sum(map(len, runs)) == int(enc.flags.sum())   # ... plus </s>
      assert tok.image_id not in enc.ids[enc.flags]
  # A video's placeholder stands for its keyframes (both frames of the GIF); max_images caps them.
  video = _instruction(records["video"])
  assert video.frame_indices == (0, 1) and video.segments[0].text == "<image><image>\nWhere does the box move?"
  assert _instruction(records["video"], 1).frame_indices == (0,)
  # Two images, room for one: the second placeholder goes.
  assert _instruction(records["4711"], 1).segments[0].text == "<image> and : are these the same?"
  # A conversation holds no behavior: the content-only twin is the same example.
  assert verbalize.verbalize(records["multi_turn"], "instruction", rng=np.random.default_rng(0), max_images=4,
                             content_only=True) == multi


def _both_tasks_corpus(root, n=50):
  """A generic-JSONL corpus whose every record takes both blift (comments, upvotes) and instruction."""
  path = os.path.join(root, "both.jsonl")
  with open(path, "w") as f:
    for i in range(n):
      f.write(json.dumps({
          "record_id": f"r{i}", "content": {
              "title": f"post {i}", "media": ["media/red_ball.png"],
              "conversation": [["human", "<image>\nDescribe the image."], ["gpt", f"A red ball, number {i}."]]},
          "behavior": {"upvotes": 10 + i, "comments": ["nice ball", "great colour"]}}) + "\n")
  shutil.copytree(os.path.join(FIXTURES, "media"), os.path.join(root, "media"))
  data_dir = os.path.join(root, "built")
  (report,) = commands.build_corpus("jsonl", path, data_dir)
  assert report["splits"]["train"] == {"records": n, "quarantined": 0}
  return data_dir


def _task_counts(config, corpus, tok, epochs):
  counts = collections.Counter()
  for epoch in range(epochs):
    for elem in pipeline.text_only_epoch(config, corpus, tok, 0, epoch):
      assert not elem["quarantine"], elem["detail"]
      counts[config.tasks[elem["task_id"]][0]] += 1
  return counts


def test_one_to_one_mixture_within_5_percent_over_1000_samples(tmp_path):
  data_dir = _both_tasks_corpus(str(tmp_path))
  tok = tiny_tokenizer()
  corpus = pipeline.Corpus(data_dir, "train")
  config = helpers.config(data_dir, "unused", tasks=(("blift", 1.0), ("instruction", 1.0)))
  counts = _task_counts(config, corpus, tok, epochs=20)
  assert sum(counts.values()) == 1000
  assert abs(counts["instruction"] / 1000 - 0.5) <= 0.025, counts
  # The weights are what decide: 3:1 shifts the mix to about 75:25.
  config = helpers.config(data_dir, "unused", tasks=(("blift", 3.0), ("instruction", 1.0)))
  counts = _task_counts(config, corpus, tok, epochs=20)
  assert abs(counts["blift"] / 1000 - 0.75) <= 0.04, counts


TINY = {("cbc", "train"): 6, ("cbc", "test"): 2, ("blift", "train"): 6, ("blift", "test"): 2,
        ("tweets", "train"): 8, ("tweets", "test_time"): 2, ("tweets", "test_brand"): 2}


def test_embedded_corpus_yields_instruction_examples(tmp_path):
  gen = str(tmp_path / "gen")
  manifest = world.generate(gen, seed=0, counts=TINY, progress=False, instructions=True)
  assert [(e["split"], e["count"]) for e in manifest["instructions"]] == [("train", 12), ("test", 4)]
  # Asked for nothing, a custom-size corpus has no instruction rows (its file set is what tests pin).
  assert world.generate(str(tmp_path / "plain"), seed=0, counts=TINY, progress=False)["instructions"] == []
  records = [r for r in behavior_world.read(gen, source="llava_json", with_latent=True)]
  assert len(records) == 16 and all(isinstance(r, rec.ContentBehaviorRecord) for r in records)
  by_id = {r.record_id: r for r in behavior_world.read(gen) if r.source != "llava_json"}
  for r in records:
    item = by_id[r.record_id]                  # the row is about that item's media ...
    assert r.content.media[0].path == os.path.join(item.source, item.content.media[0].path)
    assert r.latent["split"] in ("train", "test") and r.latent["tone"]   # ... and shares its hidden labels
    first = r.content.conversation[1][1]
    if item.source == "cbc":   # the caption turn says what each scene shows
      assert first.startswith(f"{len(item.content.scenes)} scene") and len(r.content.scenes) == len(item.content.scenes)
      assert all(s.captions[0] in first for s in item.content.scenes)
    else:
      assert first == item.content.scenes[0].captions[0].capitalize() + "."
    words = set(" ".join(t for _, t in r.content.conversation).lower().replace(".", " ").split())
    assert not words & (set(world.TONES) | set(world.TOPICS))   # never the hidden labels

  # Built with the rest of the corpus, a 1:1 blift + instruction recipe sees both, equally often here
  # (one instruction row per video and post: exactly the records blift takes), in real batches.
  data_dir = str(tmp_path / "built")
  names = [r["dataset"] for r in commands.build_corpus("behavior_world", gen, data_dir)]
  assert names == ["cbc", "blift", "tweets", "llava_json"]
  tok_dir = helpers.train_tokenizer(data_dir, str(tmp_path / "tok"))
  config = helpers.config(data_dir, tok_dir, tasks=(("blift", 1.0), ("instruction", 1.0)), seq_len=1024)
  it = pipeline.make_iterator(config)
  batches = list(it)
  task_of_sample = collections.Counter()
  for b in batches:
    for row_seg, row_task in zip(b["segment_ids"], b["task_ids"]):
      for seg in set(row_seg.tolist()) - {0}:
        task_of_sample[config.tasks[int(row_task[row_seg == seg][0])][0]] += 1
  assert task_of_sample == {"blift": 12, "instruction": 12}
  assert it.quarantine_totals() == {"no_task": 8}   # the tweets take neither task
  assert all(np.isfinite(b["images"]).all() for b in batches)


def test_by_weight_mixture_holds_the_weights_over_datasets_of_any_size(tmp_path):
  """BLIFT-only records (12) and instruction-only rows (60) in separate datasets: per record, the mix
  follows the row counts (1:5); `by_weight` gives the weights' 1:1 (and 3:1) within 5% over 1,000."""
  root = str(tmp_path)
  shutil.copytree(os.path.join(FIXTURES, "media"), os.path.join(root, "media"))
  with open(os.path.join(root, "posts.jsonl"), "w") as f:
    for i in range(12):
      f.write(json.dumps({"record_id": f"p{i}", "content": {"title": f"post {i}", "media": ["media/red_ball.png"]},
                          "behavior": {"upvotes": 10 + i, "comments": ["nice ball"]}}) + "\n")
  with open(os.path.join(root, "chat.json"), "w") as f:
    json.dump([{"id": f"c{i}", "image": "media/red_ball.png",
                "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                                  {"from": "gpt", "value": f"A red ball, number {i}."}]} for i in range(60)], f)
  data_dir = os.path.join(root, "built")
  commands.build_corpus("jsonl", os.path.join(root, "posts.jsonl"), data_dir)
  commands.build_corpus("llava_json", os.path.join(root, "chat.json"), data_dir)
  tok = tiny_tokenizer()
  corpus = pipeline.Corpus(data_dir, "train")
  assert len(corpus) == 72
  tasks = (("blift", 1.0), ("instruction", 1.0))
  per_record = _task_counts(helpers.config(data_dir, "unused", tasks=tasks), corpus, tok, epochs=14)
  assert per_record["blift"] * 5 == per_record["instruction"]   # each record once an epoch: 12 : 60
  for weights, share in (((1.0, 1.0), 0.5), ((3.0, 1.0), 0.75)):
    config = helpers.config(data_dir, "unused", tasks=(("blift", weights[0]), ("instruction", weights[1])))
    config = dataclasses.replace(config, mixture="by_weight")
    counts = _task_counts(config, corpus, tok, epochs=14)
    n = sum(counts.values())
    assert n == 14 * 72 and abs(counts["blift"] / n - share) <= 0.025, counts


def test_a_json_list_is_streamed_and_a_break_keeps_the_rows_before_it(tmp_path):
  """A LLaVA .json list is read element by element: the rows before a break build, the break is one
  unreadable_file naming the element, and a list several times larger than the reader's memory
  growth is read (a whole-file parse holds the file and every row at once)."""
  good = {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
  rows = [{**good, "id": f"r{i}"} for i in range(3)]
  (tmp_path / "broken.json").write_text(json.dumps(rows)[:-1] + ', {"id": "x", "conversations": [} ]')
  got = [(x.record_id, getattr(x, "reason", "clean")) for x in llava_json.read(str(tmp_path / "broken.json"))]
  assert got == [("r0", "clean"), ("r1", "clean"), ("r2", "clean"), ("broken.json:3", "unreadable_file")]
  big = tmp_path / "big.json"
  with open(big, "w") as f:
    f.write("[")
    for i in range(60_000):
      f.write(("," if i else "") + json.dumps({**good, "id": f"b{i}", "conversations": [
          {"from": "human", "value": "describe it " * 20}, {"from": "gpt", "value": f"answer {i} " * 20}]}))
    f.write("]")
  script = ("import resource, sys\nfrom data_pipeline.sources import llava_json\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "n = sum(1 for x in llava_json.read(sys.argv[1]) if not hasattr(x, 'reason'))\n"
            "print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n")
  import subprocess, sys
  out = subprocess.run([sys.executable, "-c", script, str(big)], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split()
  assert int(out[0]) == 60_000
  assert int(out[1]) < os.path.getsize(big) / 4, (out, os.path.getsize(big))
