"""Golden tests: every verbalization template and its content-only twin, pinned to exact text."""
import dataclasses

import numpy as np
import pytest

from data_pipeline import records as rec
from data_pipeline import verbalize


def golden_records():
  video = rec.ContentBehaviorRecord(
      "v1", "cbc",
      rec.Content(title="Red ball fun", description="A ball video", media=(rec.MediaRef("media/v1.gif", "video"),),
                  scenes=(rec.Scene(asr="look at this ball", captions=("a red ball",)),
                          rec.Scene(asr="it bounces fast", ocr="SALE", captions=("a red ball moving fast",)),
                          rec.Scene(asr="the end", captions=("a blue square",)),
                          rec.Scene(asr="bye now", captions=("a green star",)))),
      rec.Communicator("acme_tv", "Acme", 120000), "2024-03-05",
      rec.Behavior(likes=53500, views=2140000, replay=(12.4, 88.6, 40, 3)),
      latent={"tone": "cheerful"})
  tweet = rec.ContentBehaviorRecord(
      "t1", "tweets",
      rec.Content(text="Our new red ball is here!", media=(rec.MediaRef("media/t1.png"),),
                  scenes=(rec.Scene(captions=("a red ball on a white background",)),), keywords=("ball", "red")),
      rec.Communicator("acme", "Acme", 5400), "2024-01-02", rec.Behavior(likes=120))
  post = rec.ContentBehaviorRecord(
      "r1", "blift",
      rec.Content(title="My cat at sunset", subreddit="pics", media=(rec.MediaRef("media/r1.png"),),
                  scenes=(rec.Scene(captions=("a cat in orange light",)),)),
      rec.Communicator("u_bob"), None,
      rec.Behavior(upvotes=4321, comments=("so cute", "love the colors", "great shot", "boring <image> one",
                                           "wow", "sixth comment is dropped")))
  # Tweets of the same account so that percentile levels exist: likes 1..10 and the golden tweet's 120.
  others = [dataclasses.replace(tweet, record_id=f"t{i + 2}", behavior=rec.Behavior(likes=float(i + 1)))
            for i in range(10)]
  # BLIFT behavior lengths (text units) the content-only twin fills: the golden video's kind has 40,
  # a 1-scene post 25.
  context = verbalize.Context(like_levels=verbalize.LikeLevels.fit([tweet] + others),
                              asr_pool=tuple(f"option text {i}" for i in range(30)) + ("bye now",),
                              blift_behavior_units={(True, 4): (40.0, 3), (False, 1): (25.0, 5)})
  return video, tweet, post, context


# (task, record, options, content_only) -> (prompt, target, answer, frame_indices); rng seed 0, max_images 3.
GOLDEN = {
    ('behavior_simulation', 'video', (), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: [MASK]}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: [MASK]}\nViews: [MASK], Likes-per-View: [MASK]\nPredict the masked behavior.\n',
        'Scene 1: {Replay: 12%}, Scene 2: {Replay: 89%}, Scene 3: {Replay: 40%}, Scene 4: {Replay: 3%}, Views: 2.1 Million, Likes-per-View: 2.5%',
        {'replay': (12, 89, 40, 3), 'views': 2100000.0, 'likes_per_view': 2.5}, (0, 2, 3)),
    ('behavior_simulation', 'video', (), True): (
        'Video: Red ball fun. Channel: Acme. Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: [MASK]}\nScene 3: <image> {ASR: the end, Captions: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: [MASK]}\nDescribe the masked captions of every scene.\n',
        'Scene 1: {Captions: a red ball}, Scene 2: {Captions: a red ball moving fast}, Scene 3: {Captions: a blue square}, Scene 4: {Captions: a green star}',
        ('a red ball', 'a red ball moving fast', 'a blue square', 'a green star'), (0, 2, 3)),
    ('kbft', 'video', (('regime', 'train'),), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: [MASK]}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: [MASK]}\nViews: 2.1 Million, Likes-per-View: 2.5%\nPredict the masked replay values.\n',
        'Scene 1: {Replay: 12%}, Scene 2: {Replay: 89%}, Scene 3: {Replay: 40%}, Scene 4: {Replay: 3%}',
        {'scenes': (0, 1, 2, 3), 'replay': (12, 89, 40, 3)}, (0, 2, 3)),
    ('kbft', 'video', (('regime', 'train'),), True): (
        'Video: Red ball fun. Channel: Acme. Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: [MASK]}\nScene 3: <image> {ASR: the end, Captions: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: [MASK]}\nPredict the masked captions.\n',
        'Scene 1: {Captions: a red ball}, Scene 2: {Captions: a red ball moving fast}, Scene 3: {Captions: a blue square}, Scene 4: {Captions: a green star}',
        {'scenes': (0, 1, 2, 3), 'captions': ('a red ball', 'a red ball moving fast', 'a blue square', 'a green star')}, (0, 2, 3)),
    ('kbft', 'video', (('regime', 'past'),), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: 89}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: 40}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: 3}\nViews: 2.1 Million, Likes-per-View: 2.5%\nPredict the masked replay values.\n',
        'Scene 1: {Replay: 12%}',
        {'scenes': (0,), 'replay': (12,)}, (0, 2, 3)),
    ('kbft', 'video', (('regime', 'future'),), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: 12}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: 89}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: 40}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: [MASK]}\nViews: 2.1 Million, Likes-per-View: 2.5%\nPredict the masked replay values.\n',
        'Scene 4: {Replay: 3%}',
        {'scenes': (3,), 'replay': (3,)}, (0, 2, 3)),
    ('kbft', 'video', (('regime', 'random'), ('k', 2)), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: 12}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: 89}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: [MASK]}\nViews: 2.1 Million, Likes-per-View: 2.5%\nPredict the masked replay values.\n',
        'Scene 3: {Replay: 40%}, Scene 4: {Replay: 3%}',
        {'scenes': (2, 3), 'replay': (40, 3)}, (0, 2, 3)),
    ('kbft', 'video', (('regime', 'all'),), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: [MASK]}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: [MASK]}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: [MASK]}\nScene 4: <image> {ASR: bye now, Captions: a green star, Replays: [MASK]}\nViews: 2.1 Million, Likes-per-View: 2.5%\nPredict the masked replay values.\n',
        'Scene 1: {Replay: 12%}, Scene 2: {Replay: 89%}, Scene 3: {Replay: 40%}, Scene 4: {Replay: 3%}',
        {'scenes': (0, 1, 2, 3), 'replay': (12, 89, 40, 3)}, (0, 2, 3)),
    ('content_simulation_choice', 'video', (), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball, Replays: 12}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast, Replays: 89}\nScene 3: <image> {ASR: the end, Captions: a blue square, Replays: 40}\nScene 4: <image> {ASR: [MASK], Captions: a green star, Replays: 3}\nWhich option is the masked ASR of scene 4?\n1. option text 3\n2. option text 18\n3. option text 21\n4. option text 2\n5. option text 14\n6. option text 28\n7. option text 13\n8. option text 26\n9. option text 20\n10. option text 25\n11. option text 10\n12. option text 11\n13. option text 9\n14. option text 4\n15. option text 0\n16. option text 23\n17. option text 27\n18. bye now\n19. option text 12\n20. option text 22\n21. option text 24\n22. option text 29\n23. option text 15\n24. option text 19\n25. option text 7\nAnswer: ',
        '18',
        18, (0, 2, 3)),
    ('content_simulation_choice', 'video', (), True): (
        'Video: Red ball fun. Channel: Acme. Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Captions: a red ball}\nScene 2: {ASR: it bounces fast, OCR: SALE, Captions: a red ball moving fast}\nScene 3: <image> {ASR: the end, Captions: a blue square}\nScene 4: <image> {ASR: [MASK], Captions: a green star}\nWhich option is the masked ASR of scene 4?\n1. option text 3\n2. option text 18\n3. option text 21\n4. option text 2\n5. option text 14\n6. option text 28\n7. option text 13\n8. option text 26\n9. option text 20\n10. option text 25\n11. option text 10\n12. option text 11\n13. option text 9\n14. option text 4\n15. option text 0\n16. option text 23\n17. option text 27\n18. bye now\n19. option text 12\n20. option text 22\n21. option text 24\n22. option text 29\n23. option text 15\n24. option text 19\n25. option text 7\nAnswer: ',
        '18',
        18, (0, 2, 3)),
    ('tweet_generation', 'tweet', (), False): (
        'Generate a tweet given the media verbalization and the likes it got.\nAccount: acme (Acme), 2024-01-02\nMedia: <image> {a red ball on a white background, keywords: ball, red}\nThis tweet has high likes.\nTweet: ',
        'Our new red ball is here!',
        'Our new red ball is here!', (0,)),
    ('tweet_generation', 'tweet', (), True): (
        'Generate a tweet given the media verbalization.\nAccount: acme (Acme), 2024-01-02\nMedia: <image> {a red ball on a white background, keywords: ball, red}\nTweet: ',
        'Our new red ball is here!',
        'Our new red ball is here!', (0,)),
    ('behavior_understanding', 'video', (), False): (
        'Video: Red ball fun. Channel: Acme (120k subscribers). Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball, Replays: 12}\nScene 2: {ASR: it bounces fast, OCR: SALE, Replays: 89}\nScene 3: <image> {ASR: the end, Replays: 40}\nScene 4: <image> {ASR: bye now, Replays: 3}\nWhich scene is the most replayed, and why?\n',
        'Scene 2 is the most replayed (Replays: 89) because it shows a red ball moving fast.',
        2, (0, 2, 3)),
    ('behavior_understanding', 'video', (), True): (
        'Video: Red ball fun. Channel: Acme. Date: 2024-03-05.\nDescription: A ball video\nScene 1: <image> {ASR: look at this ball}\nScene 2: {ASR: it bounces fast, OCR: SALE}\nScene 3: <image> {ASR: the end}\nScene 4: <image> {ASR: bye now}\nWhat does scene 4 show?\n',
        'Scene 4 shows a green star.',
        'a green star', (0, 2, 3)),
    ('behavior_understanding', 'post', (), False): (
        'Post by u_bob in r/pics.\nMedia: <image>\nTitle: My cat at sunset\nComments:\n1. so cute\n2. love the colors\n3. great shot\n4. boring <img> one\n5. wow\n6. sixth comment is dropped\nWhat is the overall sentiment of the comments, and why?\n',
        'Positive, because people wrote "so cute" and "love the colors".',
        'positive', (0,)),
    ('behavior_understanding', 'post', (), True): (
        'Post by u_bob in r/pics.\nMedia: <image>\nTitle: My cat at sunset\nDescribe the media.\n',
        'a cat in orange light',
        'a cat in orange light', (0,)),
    ('likes_high_low', 'tweet', (), False): (
        'Given a tweet of Acme posted by acme (5k followers) on 2024-01-02. Tweet: Our new red ball is here! Media: <image> {a red ball on a white background, keywords: ball, red}.\nPredict whether it will receive high or low likes.\n',
        'This tweet has high likes.',
        'high', (0,)),
    ('likes_high_low', 'tweet', (), True): (
        'Given a tweet of Acme posted by acme on 2024-01-02. Tweet: Our new red ball is here! Media: <image>.\nDescribe the media.\n',
        'a red ball on a white background, keywords: ball, red',
        'a red ball on a white background, keywords: ball, red', (0,)),
    ('blift', 'video', (), False): (
        'SYSTEM: You are a helpful assistant. Answer as if you can see the media: describe it, then predict how people respond to it.\nUSER: <image> <image> <image>\nTitle: Red ball fun\nPosted by: Acme\nASR: look at this ball it bounces fast the end bye now\nDescribe the media scene by scene, then predict the share of viewers who like it, the top comments, and the replay value per scene.\nASSISTANT: ',
        'Scene 1: a red ball. Scene 2: a red ball moving fast. Scene 3: a blue square. Scene 4: a green star.\n>>> BEHAVIOR <<<\nThe video will be liked by 2.5% of viewers.\nReplays: Scene 1: 0.12, Scene 2: 0.89, Scene 3: 0.40, Scene 4: 0.03',
        {'description': 'Scene 1: a red ball. Scene 2: a red ball moving fast. Scene 3: a blue square. Scene 4: a green star.', 'likes_percent': 2.5, 'upvotes': None, 'comments': (), 'replay': (0.12, 0.89, 0.4, 0.03)}, (0, 2, 3)),
    ('blift', 'video', (), True): (
        "SYSTEM: You are a helpful assistant. Answer as if you can see the media: describe it, then predict how people respond to it.\nUSER: <image> <image> <image>\nTitle: Red ball fun\nPosted by: Acme\nASR: look at this ball it bounces fast the end bye now\nDescribe the media scene by scene, then restate its details: each scene's captions, speech and on-screen text, and the title.\nASSISTANT: ",
        'Scene 1: a red ball. Scene 2: a red ball moving fast. Scene 3: a blue square. Scene 4: a green star.\n>>> CONTENT <<<\nTitle: Red ball fun.\nScene 1 shows a red ball.\nScene 1 says: look at this ball.\nScene 2 shows a red ball moving fast.',
        'Scene 1: a red ball. Scene 2: a red ball moving fast. Scene 3: a blue square. Scene 4: a green star.\n>>> CONTENT <<<\nTitle: Red ball fun.\nScene 1 shows a red ball.\nScene 1 says: look at this ball.\nScene 2 shows a red ball moving fast.', (0, 2, 3)),
    ('blift', 'post', (), False): (
        'SYSTEM: You are a helpful assistant. Answer as if you can see the media: describe it, then predict how people respond to it.\nUSER: <image>\nTitle: My cat at sunset\nPosted by: u_bob\nSubreddit: r/pics\nDescribe the media scene by scene, then predict how many people like it and the top comments.\nASSISTANT: ',
        'Scene 1: a cat in orange light.\n>>> BEHAVIOR <<<\nThe post will receive 4 thousand upvotes.\nTop comments: 1. so cute 2. love the colors 3. great shot 4. boring <img> one 5. wow',
        {'description': 'Scene 1: a cat in orange light.', 'likes_percent': None, 'upvotes': 4000.0, 'comments': ('so cute', 'love the colors', 'great shot', 'boring <img> one', 'wow'), 'replay': None}, (0,)),
    ('blift', 'post', (), True): (
        'SYSTEM: You are a helpful assistant. Answer as if you can see the media: describe it, then predict how people respond to it.\nUSER: <image>\nTitle: My cat at sunset\nPosted by: u_bob\nSubreddit: r/pics\nDescribe the media scene by scene, then restate its details: its caption and its title.\nASSISTANT: ',
        'Scene 1: a cat in orange light.\n>>> CONTENT <<<\nTitle: My cat at sunset.\nScene 1 shows a cat in orange light.',
        'Scene 1: a cat in orange light.\n>>> CONTENT <<<\nTitle: My cat at sunset.\nScene 1 shows a cat in orange light.', (0,)),
}


# The unrounded values behind a rounded answer (Verbalized.exact): what metrics compare against.
GOLDEN_EXACT = {
    ('behavior_simulation', 'video', (), False): {'views': 2140000, 'likes_per_view': 2.5},
    ('blift', 'video', (), False): {'likes_percent': 2.5, 'upvotes': None},
    ('blift', 'post', (), False): {'likes_percent': None, 'upvotes': 4321},
}


@pytest.mark.parametrize("key", list(GOLDEN), ids=lambda k: f"{k[0]}-{k[1]}-{'-'.join(str(v) for _, v in k[2])}"
                         f"{'-content_only' if k[3] else ''}")
def test_golden(key):
  task, which, options, content_only = key
  video, tweet, post, context = golden_records()
  record = {"video": video, "tweet": tweet, "post": post}[which]
  out = verbalize.verbalize(record, task, rng=np.random.default_rng(0), max_images=3,
                            content_only=content_only, context=context, **dict(options))
  prompt, target, answer, frames = GOLDEN[key]
  assert out.prompt == prompt
  assert out.target == target
  assert out.answer == answer
  assert out.parse(out.target) == answer
  assert out.exact == ({**answer, **GOLDEN_EXACT[key]} if key in GOLDEN_EXACT else answer)
  assert out.frame_indices == frames
  assert out.template_version == verbalize.VERSIONS[task]
  assert [s.is_target for s in out.segments] == [False, True]
  assert out.text.count("<image>") == len(out.media) == len(frames)
  assert all(m is record.content.media[0] for m in out.media)


def test_every_task_and_twin_has_a_golden_case():
  covered = {(k[0], k[3]) for k in GOLDEN}
  # instruction: a multi-segment conversation, pinned segment by segment in tests/test_instruction_data.py.
  assert covered == {(t, co) for t in verbalize.TASKS if t != "instruction" for co in (False, True)}


def test_content_only_twins_carry_no_behavior():
  video, tweet, post, context = golden_records()
  for (task, which, options, content_only), (prompt, target, _, _) in GOLDEN.items():
    if not content_only:
      continue
    text = prompt + target
    for behavior_word in ("Replay", "Views", "Likes-per-View", "likes.", "upvotes", "BEHAVIOR", "Comments",
                          "so cute"):
      assert behavior_word not in text, (task, behavior_word)


def test_number_words():
  assert verbalize.views_in_words(346_123) == "346 thousand"
  assert verbalize.views_in_words(2_140_000) == "2.1 Million"
  assert verbalize.views_in_words(12_000_000) == "12 Million"
  assert verbalize.views_in_words(999_999) == "1 Million"
  assert verbalize.views_in_words(3.4e9) == "3.4 Billion"
  assert verbalize.views_in_words(950) == "950"
  assert verbalize.compact_count(100_000) == "100k"
  assert verbalize.compact_count(2_100_000) == "2.1M"
  assert verbalize.likes_per_view(53_500, 2_140_000) == "2.5%"
  assert verbalize.likes_per_view(5, 0) == "0.0%"


def test_like_levels_are_per_account_percentiles():
  recs = [rec.ContentBehaviorRecord(f"a{i}", "tweets", communicator=rec.Communicator("a"),
                                    behavior=rec.Behavior(likes=float(i))) for i in range(1, 101)]
  recs += [rec.ContentBehaviorRecord(f"b{i}", "tweets", communicator=rec.Communicator("b"),
                                     behavior=rec.Behavior(likes=1000.0 * i)) for i in range(1, 11)]
  levels = verbalize.LikeLevels.fit(recs)
  assert levels.thresholds["tweets/a"] == pytest.approx((60.4, 90.1))   # numpy linear percentiles of 1..100
  assert levels.thresholds["tweets/b"] == pytest.approx((6400.0, 9100.0))
  by_id = {r.record_id: levels.level(r) for r in recs}
  assert (by_id["a60"], by_id["a61"], by_id["a90"], by_id["a91"]) == ("low", "medium", "medium", "high")
  assert [by_id[f"b{i}"] for i in (6, 7, 9, 10)] == ["low", "medium", "medium", "high"]
  unknown = [rec.ContentBehaviorRecord(f"c{i}", "tweets", communicator=rec.Communicator("c"),
                                       behavior=rec.Behavior(likes=likes)) for i, likes in enumerate((5.0, 50.0))]
  assert levels.level(unknown[0]) is None
  extended = levels.extend(unknown + recs[:3])   # known accounts keep their training thresholds
  assert [extended.level(r) for r in unknown] == ["low", "high"]
  assert extended.thresholds["tweets/a"] == levels.thresholds["tweets/a"]
  # The same account on another platform has its own scale.
  video = dataclasses.replace(recs[0], source="cbc", behavior=rec.Behavior(likes=1e6))
  assert levels.level(video) is None and verbalize.LikeLevels.fit([video]).level(recs[0]) is None


def test_kbft_windows():
  rng = np.random.default_rng(0)
  for _ in range(200):
    n = int(rng.integers(4, 40))
    lo, hi = verbalize.kbft_window(n, rng, "past")
    assert lo == 0 and 1 <= hi <= max(1, round(0.2 * n))
    lo, hi = verbalize.kbft_window(n, rng, "future")
    assert hi == n and 1 <= n - lo <= max(1, round(0.2 * n))
    lo, hi = verbalize.kbft_window(n, rng, "train")
    assert hi - lo in {min(k, n) for k in verbalize.KBFT_K} and 0 <= lo < hi <= n
    lo, hi = verbalize.kbft_window(n, rng, "random")
    assert hi - lo in (min(5, n), min(7, n))
    assert verbalize.kbft_window(n, rng, "all") == (0, n)
  with pytest.raises(ValueError, match="regime"):
    verbalize.kbft_window(5, rng, "sideways")


def test_parsers_read_back_targets():
  video, tweet, post, context = golden_records()
  rng = np.random.default_rng(1)
  out = verbalize.verbalize(video, "behavior_simulation", rng=rng, max_images=8, context=context)
  assert verbalize.parse_replays(out.target) == dict(enumerate(out.answer["replay"]))
  assert verbalize.parse_views(out.target) == pytest.approx(2.1e6)
  assert verbalize.parse_likes_per_view(out.target) == pytest.approx(2.5)
  out = verbalize.verbalize(video, "blift", rng=rng, max_images=8, context=context)
  assert verbalize.parse_blift(out.target)["replay"] == out.answer["replay"]
  out = verbalize.verbalize(tweet, "likes_high_low", rng=rng, max_images=1, context=context)
  assert verbalize.parse_level(out.target) == out.answer == "high"
  assert [out.parse(text) for _, text in out.options] == ["high", "low"]
  out = verbalize.verbalize(video, "content_simulation_choice", rng=rng, max_images=1, context=context)
  assert verbalize.parse_choice(out.target) == out.answer
  assert [out.parse(text) for _, text in out.options] == [a for a, _ in out.options] == list(range(1, 26))
  assert verbalize.parse_replays("garbage") == {} and verbalize.parse_level("no idea") is None


def test_image_placeholders_match_media_for_any_max_images():
  video, tweet, post, context = golden_records()
  for max_images, frames in ((0, ()), (1, (0,)), (2, (0, 3)), (4, (0, 1, 2, 3)), (9, (0, 1, 2, 3))):
    for task in ("behavior_simulation", "kbft", "blift", "behavior_understanding"):
      out = verbalize.verbalize(video, task, rng=np.random.default_rng(0), max_images=max_images, context=context)
      assert out.frame_indices == frames
      assert out.text.count("<image>") == len(out.media)
  # "<image>" inside record text never becomes a placeholder.
  out = verbalize.verbalize(post, "behavior_understanding", rng=np.random.default_rng(0), max_images=0)
  assert out.text.count("<image>") == 0 and "boring <img> one" in out.prompt


def test_latent_is_never_read():
  video, tweet, post, context = golden_records()
  for task in ("behavior_simulation", "blift", "kbft"):
    outs = [verbalize.verbalize(dataclasses.replace(video, latent=latent), task, rng=np.random.default_rng(0),
                                max_images=3, context=context) for latent in ({}, {"tone": "gloomy", "topic": "x"})]
    assert outs[0] == outs[1]
    assert "cheerful" not in outs[0].text


def test_errors_name_the_fix():
  video, tweet, post, context = golden_records()
  with pytest.raises(ValueError, match="unknown task"):
    verbalize.verbalize(video, "nope", rng=np.random.default_rng(0), max_images=1)
  with pytest.raises(ValueError, match="applies"):
    verbalize.verbalize(post, "kbft", rng=np.random.default_rng(0), max_images=1)
  assert not verbalize.applies(tweet, "likes_high_low", None)
  assert not verbalize.applies(video, "content_simulation_choice", None)   # no distractors without a context
  assert verbalize.applies(video, "content_simulation_choice", context)
  assert verbalize.applies(tweet, "likes_high_low", context)
