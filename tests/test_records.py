"""Record types, value conversion and validation reason codes."""
import dataclasses
import io
import math
import os

import numpy as np
import pytest
from PIL import Image

from data_pipeline import records as rec


def _png(mode="RGB", size=(8, 8), fmt="PNG", frames=1) -> bytes:
  buf = io.BytesIO()
  imgs = [Image.new(mode, size, i * 40 if mode in ("L", "I;16", "P") else None) for i in range(frames)]
  if frames > 1:
    imgs = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(frames)]
    imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:])
  else:
    imgs[0].save(buf, fmt)
  return buf.getvalue()


def _record(**changes) -> rec.ContentBehaviorRecord:
  base = rec.ContentBehaviorRecord(
      "r1", "test", rec.Content(title="a title", scenes=(rec.Scene(asr="hi", captions=("c",)),
                                                          rec.Scene(asr="there"))),
      rec.Communicator("acct", "Brand", 100), "2024-01-02", rec.Behavior(likes=1.0, views=10.0, replay=(5.0, 95.0)))
  return dataclasses.replace(base, **changes)


def _reason(record, media_root=None):
  out = rec.validate(record, media_root, "f:1")
  return out.reason if isinstance(out, rec.Quarantined) else "clean"


def test_as_count():
  assert rec.as_count(3, "likes") == 3.0 and rec.as_count(None, "likes") is None
  assert rec.as_count(1e12, "views") == 1e12
  for value, reason in (("12", "wrong_type"), (True, "wrong_type"), ([1], "wrong_type"), (math.nan, "non_finite"),
                        (math.inf, "non_finite"), (-1, "negative_count"), (2 ** 63, "absurd_count"),
                        (1.5e12, "absurd_count")):
    with pytest.raises(rec.RecordError) as e:
      rec.as_count(value, "likes")
    assert e.value.reason == reason, value
  with pytest.raises(rec.RecordError, match="missing_field"):
    rec.as_count(None, "likes", required=True)


def test_as_text_and_date():
  assert rec.as_text(None, "t") == "" and rec.as_text("é".encode(), "t") == "é"
  for value, reason in ((b"\xff", "invalid_utf8"), ("a\udc80", "invalid_utf8"), (3, "wrong_type")):
    with pytest.raises(rec.RecordError) as e:
      rec.as_text(value, "t")
    assert e.value.reason == reason
  assert rec.as_text_list(["a", "b"], "t") == ("a", "b")
  with pytest.raises(rec.RecordError, match="wrong_type"):
    rec.as_text_list("ab", "t")
  assert rec.as_date("2024-03-05T12:00:00Z") == "2024-03-05" and rec.as_date("") is None
  with pytest.raises(rec.RecordError, match="bad_date"):
    rec.as_date("03/05/2024")


def test_validate_values():
  assert _reason(_record()) == "clean"
  b = _record().behavior
  cases = {
      "negative_count": _record(behavior=dataclasses.replace(b, likes=-1.0)),
      "absurd_count": _record(behavior=dataclasses.replace(b, views=float(2 ** 63))),
      "non_finite": _record(behavior=dataclasses.replace(b, replay=(math.nan, 1.0))),
      "out_of_range": _record(behavior=dataclasses.replace(b, replay=(101.0, 1.0))),
      "empty_text": _record(content=rec.Content(title="  ", scenes=(rec.Scene(), rec.Scene()))),
      "missing_field": _record(record_id=""),
      "invalid_utf8": _record(communicator=rec.Communicator("bad\udcff")),
      "bad_date": _record(time="2024-13-01"),
  }
  for reason, record in cases.items():
    assert _reason(record) == reason
  # Replay values must line up with scenes.
  assert _reason(_record(behavior=dataclasses.replace(b, replay=(1.0,)))) == "out_of_range"


def test_validate_media(tmp_path):
  def with_media(data=None, path="m.png", kind="image"):
    return _record(content=dataclasses.replace(_record().content, media=(rec.MediaRef(path, kind, data),)))
  assert _reason(with_media(_png())) == "clean"
  for mode in ("L", "RGBA", "P"):
    assert _reason(with_media(_png(mode))) == "clean", mode
  assert _reason(with_media(_png(fmt="JPEG"))) == "clean"
  assert _reason(with_media(_png(frames=3), kind="video")) == "clean"
  assert rec.load_media(rec.MediaRef("v", "video", _png(frames=3)))[1] == 3
  good = _png(size=(32, 32))
  assert _reason(with_media(good[: len(good) // 2])) == "corrupt_media"    # truncated
  assert _reason(with_media(good[:-12])) == "corrupt_media"                # cut inside the last chunk
  assert _reason(with_media(b"")) == "corrupt_media"
  assert _reason(with_media(b"not an image at all")) == "corrupt_media"
  assert _reason(with_media(_png("CMYK", fmt="JPEG"))) == "unsupported_media"
  assert _reason(with_media(_png("I;16"))) == "unsupported_media"
  assert _reason(with_media(_png("L", size=(4100, 4100)))) == "huge_media"
  assert _reason(with_media(_png(), kind="audio")) == "wrong_type"
  # From files: relative to the media root, missing, and too many bytes.
  (tmp_path / "m.png").write_bytes(_png())
  assert _reason(with_media(), str(tmp_path)) == "clean"
  assert _reason(with_media(path=str(tmp_path / "m.png"))) == "clean"
  assert _reason(with_media(path="gone.png"), str(tmp_path)) == "missing_media"
  with open(tmp_path / "big.png", "wb") as f:
    f.truncate(rec.MAX_MEDIA_BYTES + 1)
  assert _reason(with_media(path="big.png"), str(tmp_path)) == "huge_media"


def test_dict_round_trip_drops_media_bytes():
  r = _record(content=dataclasses.replace(_record().content, media=(rec.MediaRef("m.png", "image", b"xx"),)),
              latent={"tone": "gloomy"})
  d = r.to_dict()
  assert d["content"]["media"] == [{"path": "m.png", "kind": "image"}]
  assert d["content"]["scenes"][0]["captions"] == ["c"] and d["latent"] == {"tone": "gloomy"}
  back = rec.ContentBehaviorRecord.from_dict(d)
  assert back == dataclasses.replace(r, content=dataclasses.replace(r.content, media=(rec.MediaRef("m.png"),)))
  assert back.latent == {"tone": "gloomy"}


def test_every_reason_is_documented():
  with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
    doc = f.read()
  for reason in rec.REASONS:
    assert f"`{reason}`" in doc, reason
