"""The control arm (`data.content_only=true`): every task's content-only twin, on records of every
source of the embedded corpus, carries no behavior string in prompt or target and has a content target."""
import collections
import re

import numpy as np
import pytest

from data_pipeline import records as rec
from data_pipeline import verbalize, world
from data_pipeline.sources import behavior_world

COUNTS = {("cbc", "train"): 16, ("cbc", "test"): 4, ("blift", "train"): 12, ("blift", "test"): 4,
          ("tweets", "train"): 40, ("tweets", "test_time"): 8, ("tweets", "test_brand"): 8}
BEHAVIOR_WORDS = ("likes", "views", "replay", "upvote", "subscriber", "follower", verbalize.BEHAVIOR_SEPARATOR)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Records of every source kind (cbc, blift, tweets, llava_json) and the context fitted on train."""
  out = str(tmp_path_factory.mktemp("world"))
  world.generate(out, seed=5, counts=COUNTS, progress=False, instructions=True)
  records = list(behavior_world.read(out, with_latent=True))
  assert all(isinstance(r, rec.ContentBehaviorRecord) for r in records)
  train = [r for r in records if r.latent.get("split") == "train"]
  return records, verbalize.Context.fit(train, unseen=records)


def _number_spellings(value: float) -> set[str]:
  """How the templates write a count: in words, compact, and as a bare integer."""
  return {verbalize.views_in_words(value), verbalize.compact_count(value), str(int(round(value))),
          f"{int(round(value)):,}"}


def behavior_strings(record: rec.ContentBehaviorRecord) -> tuple[set[str], set[str]]:
  """(exact strings, bare numbers) that would reveal this record's behavior in a verbalization."""
  b, who = record.behavior, record.communicator
  exact, numbers = set(), set()
  for value in (b.likes, b.views, b.upvotes, who.followers):
    if value is not None:
      spellings = _number_spellings(value)
      exact |= {s for s in spellings if not s.isdigit()}
      # A small bare number also names a scene, an option or a date part: only larger ones are telling.
      numbers |= {s for s in spellings if s.isdigit() and value >= 100}
  if b.likes is not None and b.views:
    exact |= {verbalize.likes_per_view(b.likes, b.views), f"{100 * b.likes / b.views:.1f}%"}
  for v in b.replay or ():
    r = verbalize._replay_int(v)
    exact |= {f"Replay: {r}%", f"Replays: {r}", f": {r / 100:.2f}"}
  exact |= {verbalize._clean(c) for c in b.comments if c.strip()}
  return exact, numbers


def leaks(text: str, record: rec.ContentBehaviorRecord) -> list[str]:
  exact, numbers = behavior_strings(record)
  found = [w for w in BEHAVIOR_WORDS if w.lower() in text.lower()]
  found += [s for s in exact if s in text]
  found += [n for n in numbers if re.search(rf"(?<![\d.,]){re.escape(n)}(?![\d]|[.,]\d)", text)]
  return found


def _options(task: str, record: rec.ContentBehaviorRecord) -> list[dict]:
  if task == "kbft":
    return [{"regime": r} for r in ("train", "past", "future", "random", "all")]
  if task == "behavior_understanding":
    kinds = ["replay"] if verbalize._has_video_replay(record) else []
    return [{"kind": k} for k in kinds + (["sentiment"] if record.behavior.comments else [])]
  return [{}]


def test_every_twin_of_every_task_is_behavior_free_with_a_content_target(corpus):
  records, context = corpus
  seen = collections.Counter()
  for i, record in enumerate(records):
    for task in verbalize.TASKS:
      if not verbalize.applies(record, task, context):
        continue
      for opts in _options(task, record):
        v = verbalize.verbalize(record, task, rng=np.random.default_rng(i), max_images=4, content_only=True,
                                context=context, **opts)
        assert not leaks(v.prompt, record), (task, opts, record.record_id, leaks(v.prompt, record), v.prompt)
        assert not leaks(v.target, record), (task, opts, record.record_id, leaks(v.target, record), v.target)
        assert v.target.strip(), (task, opts, record.record_id)
        assert v.parse(v.target) == v.answer
        seen[(task, record.source)] += 1
  assert {t for t, _ in seen} == set(verbalize.TASKS)
  assert {s for _, s in seen} == {"cbc", "blift", "tweets", "llava_json"}


def test_the_check_finds_behavior_in_the_behavior_arm(corpus):
  """The same check on the behavior arm finds something for every task but instruction: it is not blind."""
  records, context = corpus
  found = collections.defaultdict(bool)
  for i, record in enumerate(records):
    for task in verbalize.TASKS:
      if verbalize.applies(record, task, context):
        v = verbalize.verbalize(record, task, rng=np.random.default_rng(i), max_images=4, context=context)
        found[task] |= bool(leaks(v.text, record))
  assert {t for t, f in found.items() if not f} == {"instruction"}


def test_the_twin_keeps_the_media_and_content():
  """Same media, same content: only behavior goes (a golden video record, each task's twin)."""
  video = rec.ContentBehaviorRecord(
      "v1", "cbc", rec.Content(title="Red ball fun", media=(rec.MediaRef("v.gif", "video"),),
                               scenes=(rec.Scene(asr="look", captions=("a red ball",)),
                                       rec.Scene(asr="bye", captions=("a blue box",)))),
      rec.Communicator("acme_tv", "Acme", 120000), "2024-03-05",
      rec.Behavior(likes=500, views=20000, replay=(80, 20), comments=("so fun to watch",)))
  for task in ("behavior_simulation", "kbft", "behavior_understanding", "blift"):
    arm, twin = (verbalize.verbalize(video, task, rng=np.random.default_rng(0), max_images=4, content_only=c)
                 for c in (False, True))
    assert twin.media == arm.media and twin.frame_indices == arm.frame_indices
    assert "Red ball fun" in twin.prompt and "Acme" in twin.prompt and "120k" not in twin.prompt
    assert leaks(arm.text, video) and not leaks(twin.text, video)


def test_the_blift_twin_is_as_long_as_the_behavior_it_replaces(corpus):
  """The control arm reads the same rows at the same length: per kind (post, video of n scenes), the
  twin's content part averages the behavior part's length, and no twin's length follows its own
  record's behavior (two records of one kind get parts of their content's length, whatever their comments)."""
  records, context = corpus
  by_kind = collections.defaultdict(lambda: [[], []])
  for i, record in enumerate(records):
    if record.latent.get("split") != "train" or not verbalize.applies(record, "blift", context):
      continue
    arm, twin = (verbalize.verbalize(record, "blift", rng=np.random.default_rng(i), max_images=8, content_only=c,
                                     context=context) for c in (False, True))
    description = arm.answer["description"]
    assert twin.target.startswith(description + "\n" + verbalize.CONTENT_SEPARATOR + "\n")
    kind = verbalize._blift_kind(record)
    by_kind[kind][0].append(verbalize.text_units(arm.target[len(description):]))
    by_kind[kind][1].append(verbalize.text_units(twin.target[len(description):]))
    # The prompts differ only in the question, about as long in either arm.
    assert abs(verbalize.text_units(twin.prompt) - verbalize.text_units(arm.prompt)) <= 6, (twin.prompt, arm.prompt)
  assert len(by_kind) >= 3
  arm_total = sum(sum(a) for a, _ in by_kind.values())
  twin_total = sum(sum(t) for _, t in by_kind.values())
  assert abs(twin_total / arm_total - 1) < 0.08, (arm_total, twin_total)
  for kind, (arm_units, twin_units) in by_kind.items():
    want = context.blift_behavior_units[kind][0]
    assert all(abs(t - want) <= 12 for t in twin_units), (kind, want, twin_units)
