"""One record type for every behavior corpus, and its validation with reason codes.

Every source reader (CBC parquet, BLIFT, tweets, generic JSONL, LLaVA conversation JSON, the
embedded generator) maps its rows onto `ContentBehaviorRecord`: content (media, title, text,
per-scene ASR/OCR/captions, an instruction conversation), the communicator (account, brand,
followers), the time, and the receiver behavior (likes, views, upvotes, comments, per-scene replay
values 0-100). A row that cannot become a clean record becomes
`Quarantined` with one reason code from `REASONS`; nothing is dropped silently and nothing raises.

Readers convert raw values with the `as_*` helpers, which raise `RecordError(reason, detail)`;
`validate` then checks the assembled record (values, text, and every media file opened with Pillow).
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import math
import os
import stat
from typing import Any, Mapping

from PIL import Image

from lcbm_jax import paths

# Reason code -> what it means. Reports and the README's data section lists these.
REASONS: dict[str, str] = {
    "unreadable_file": "the whole file cannot be opened or parsed in its format (e.g. not parquet)",
    "malformed_json": "the line is not valid JSON (or not a JSON object)",
    "invalid_utf8": "bytes that are not valid UTF-8 (or lone surrogates in a string)",
    "wrong_type": "a field has the wrong type (e.g. a string where a number belongs)",
    "missing_field": "a required field (record id, text, behavior) is absent",
    "negative_count": "a count (likes, views, upvotes, followers) is negative",
    "non_finite": "a count or replay value is NaN or infinite",
    "absurd_count": "a count is larger than any real platform produces",
    "out_of_range": "a replay value outside 0-100, or scenes/replays that do not line up",
    "bad_date": "the date is not ISO YYYY-MM-DD",
    "empty_text": "the item has no text at all (title, description, text, ASR, OCR, captions), or an empty turn",
    "missing_media": "a referenced media file does not exist",
    "duplicate_id": "a record id already built from an earlier row of this source (or another split: leakage)",
    "media_outside_root": "a media path that resolves (symlinks included) outside the media root, e.g. ../ or /etc/...",
    "not_regular_file": "a media path that names a directory, device, FIFO or socket, not a regular file",
    "corrupt_media": "a media file is empty, truncated, or not an image Pillow can decode",
    "unsupported_media": "a media file decodes but in a mode we do not train on (CMYK, 16-bit, ...)",
    "huge_media": "a media file is too large in bytes or pixels",
    "missing_keyframes": "a video with fewer keyframes (frames) than the record has scenes",
    "huge_line": "a JSONL line longer than any row (16 MiB): skipped in bounded pieces, never read whole",
    "bad_role": "a conversation turn's speaker is not human or gpt (user / assistant are read as those)",
    "bad_turn_order": "conversation turns do not alternate human, gpt, ... starting with human and ending with gpt",
    "image_token_mismatch": "the <image> placeholders of a conversation do not match its media (one per item)",
}
IMAGE = "<image>"                 # the placeholder of one media item in conversation text
ROLES = ("human", "gpt")          # conversation speakers, in the order their turns alternate

# Larger than any real count (YouTube's most viewed video has ~1.6e10 views); 2**63 is a parsing bug.
MAX_COUNT = 1e12
MAX_MEDIA_BYTES = 32 * 1024 * 1024
MAX_MEDIA_PIXELS = 4096 * 4096
MAX_VIDEO_FRAMES = 512
# Pillow modes that convert losslessly to 8-bit RGB; CMYK and 16/32-bit modes would silently shift colours.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX"})


@dataclasses.dataclass(frozen=True)
class MediaRef:
  """One media item. A video is a multi-frame image file (e.g. GIF): one keyframe per scene, in order."""
  path: str                   # as written in the corpus, relative to the media root (or absolute)
  kind: str = "image"         # "image" | "video"
  # Encoded bytes once loaded (`validate` loads them; the TFDS/ArrayRecord stage carries them). A
  # cache of what `path` names, so not part of the ref's identity (equality) or repr.
  data: bytes | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Scene:
  asr: str = ""
  ocr: str = ""
  captions: tuple[str, ...] = ()
  start: float = 0.0
  end: float = 0.0


@dataclasses.dataclass(frozen=True)
class Content:
  title: str = ""
  description: str = ""
  text: str = ""                          # tweet text / post body
  media: tuple[MediaRef, ...] = ()
  scenes: tuple[Scene, ...] = ()
  keywords: tuple[str, ...] = ()
  subreddit: str = ""
  # Instruction data (LLaVA conversations): (role, text) turns, role in ROLES, alternating from
  # "human"; the human turns hold one `<image>` per `media` item, in order. Empty for behavior corpora.
  conversation: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Communicator:
  account: str = ""
  brand: str = ""
  followers: int | None = None            # followers == subscribers


@dataclasses.dataclass(frozen=True)
class Behavior:
  likes: float | None = None
  views: float | None = None
  upvotes: float | None = None
  comments: tuple[str, ...] = ()
  replay: tuple[float, ...] | None = None  # per scene, 0-100


@dataclasses.dataclass(frozen=True)
class ContentBehaviorRecord:
  record_id: str
  source: str
  content: Content = Content()
  communicator: Communicator = Communicator()
  time: str | None = None                 # ISO date "YYYY-MM-DD"
  behavior: Behavior = Behavior()
  # Generator-only labels (tone, topic, memorability...) for content-understanding evaluation.
  # NEVER verbalized: verbalize.py does not read this field.
  latent: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

  def to_dict(self) -> dict[str, Any]:
    """JSON-safe dict (tuples become lists; media bytes are excluded)."""
    d = dataclasses.asdict(dataclasses.replace(
        self, content=dataclasses.replace(
            self.content, media=tuple(dataclasses.replace(m, data=None) for m in self.content.media))))
    for m in d["content"]["media"]:
      del m["data"]
    d["latent"] = dict(self.latent)
    return _lists(d)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> ContentBehaviorRecord:
    c = d.get("content", {})
    content = Content(
        title=c.get("title", ""), description=c.get("description", ""), text=c.get("text", ""),
        media=tuple(MediaRef(path=m["path"], kind=m.get("kind", "image")) for m in c.get("media", ())),
        scenes=tuple(Scene(asr=s.get("asr", ""), ocr=s.get("ocr", ""), captions=tuple(s.get("captions", ())),
                           start=s.get("start", 0.0), end=s.get("end", 0.0)) for s in c.get("scenes", ())),
        keywords=tuple(c.get("keywords", ())), subreddit=c.get("subreddit", ""),
        # .get: data built before conversations existed has no such key
        conversation=tuple((role, text) for role, text in c.get("conversation", ())))
    b = d.get("behavior", {})
    replay = b.get("replay")
    behavior = Behavior(likes=b.get("likes"), views=b.get("views"), upvotes=b.get("upvotes"),
                        comments=tuple(b.get("comments", ())),
                        replay=None if replay is None else tuple(replay))
    return cls(record_id=d["record_id"], source=d["source"], content=content,
               communicator=Communicator(**d.get("communicator", {})), time=d.get("time"),
               behavior=behavior, latent=dict(d.get("latent", {})))


@dataclasses.dataclass(frozen=True)
class Quarantined:
  record_id: str
  source: str
  reason: str     # a key of REASONS
  detail: str     # human-readable: which field, what value
  location: str   # "file:line" or "file:row"


class RecordError(ValueError):
  """Raised by the `as_*` helpers and media checks; readers turn it into `Quarantined`."""

  def __init__(self, reason: str, detail: str):
    assert reason in REASONS, reason
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


def quarantine(error: RecordError, record_id: str, source: str, location: str) -> Quarantined:
  return Quarantined(record_id=record_id, source=source, reason=error.reason, detail=error.detail,
                     location=location)


# ---------------------------------------------------------------------------------------------
# Value conversion for readers: raw JSON / parquet values -> typed record fields.

def as_count(value: Any, field: str, *, required: bool = False) -> float | None:
  """A behavior count (likes, views, upvotes, followers): finite, >= 0, <= MAX_COUNT."""
  if value is None:
    if required:
      raise RecordError("missing_field", f"{field} is missing")
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise RecordError("wrong_type", f"{field}={value!r:.60} is {type(value).__name__}, expected a number")
  if isinstance(value, float) and not math.isfinite(value):
    raise RecordError("non_finite", f"{field}={value}")
  if value < 0:
    raise RecordError("negative_count", f"{field}={value}")
  if value > MAX_COUNT:
    raise RecordError("absurd_count", f"{field}={value} > {MAX_COUNT:g}")
  return float(value)


def as_text(value: Any, field: str, *, required: bool = False) -> str:
  """A text field; None -> "" unless required. Lone surrogates count as invalid UTF-8."""
  if value is None:
    if required:
      raise RecordError("missing_field", f"{field} is missing")
    return ""
  if isinstance(value, bytes):
    try:
      value = value.decode("utf-8")
    except UnicodeDecodeError as e:
      raise RecordError("invalid_utf8", f"{field}: {e}") from None
  if not isinstance(value, str):
    raise RecordError("wrong_type", f"{field}={value!r:.60} is {type(value).__name__}, expected a string")
  _check_utf8(value, field)
  return value


def as_text_list(value: Any, field: str) -> tuple[str, ...]:
  if value is None:
    return ()
  # A list (JSON), a tuple or an array (parquet); a dict or a string is not coerced (its keys or
  # characters are not the list the field means).
  if not isinstance(value, (list, tuple)) and type(value).__name__ != "ndarray":
    raise RecordError("wrong_type", f"{field} is {type(value).__name__}, expected a list of strings")
  return tuple(as_text(v, f"{field}[{i}]") for i, v in enumerate(value))


def as_mapping(value: Any, field: str) -> dict[str, Any]:
  """A nested object (a JSON object, a parquet struct); missing = empty."""
  if value is None:
    return {}
  if not isinstance(value, dict):
    raise RecordError("wrong_type", f"{field} is {type(value).__name__}, expected an object")
  return value


def as_date(value: Any, field: str = "date") -> str | None:
  """ISO date "YYYY-MM-DD" (a longer ISO timestamp is cut to its date)."""
  if value is None or value == "":
    return None
  if isinstance(value, (datetime.date, datetime.datetime)):
    return value.strftime("%Y-%m-%d")
  text = as_text(value, field)[:10]
  try:
    return datetime.date.fromisoformat(text).isoformat()
  except ValueError:
    raise RecordError("bad_date", f"{field}={value!r:.40}") from None


def _check_utf8(text: str, field: str) -> None:
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise RecordError("invalid_utf8", f"{field}: {e.reason} at {e.start}") from None


# ---------------------------------------------------------------------------------------------
# Record validation.

def validate(record: ContentBehaviorRecord, media_root: str | os.PathLike | None = None,
             location: str = "") -> ContentBehaviorRecord | Quarantined:
  """Checks values, text and every media file; returns the record with its media bytes loaded
  (`MediaRef.data`: the bytes validated are the bytes the builder writes, read once) or `Quarantined`."""
  try:
    return _validate(record, media_root)
  except RecordError as e:
    return quarantine(e, record.record_id, record.source, location)


def _validate(record: ContentBehaviorRecord, media_root) -> ContentBehaviorRecord:
  if not record.record_id:
    raise RecordError("missing_field", "record_id is empty")
  c, b, who = record.content, record.behavior, record.communicator
  texts = {"title": c.title, "description": c.description, "text": c.text, "subreddit": c.subreddit,
           "account": who.account, "brand": who.brand}
  for i, s in enumerate(c.scenes):
    texts.update({f"scenes[{i}].asr": s.asr, f"scenes[{i}].ocr": s.ocr})
    texts.update({f"scenes[{i}].captions[{j}]": t for j, t in enumerate(s.captions)})
  texts.update({f"comments[{i}]": t for i, t in enumerate(b.comments)})
  texts.update({f"keywords[{i}]": t for i, t in enumerate(c.keywords)})
  for i, (role, text) in enumerate(c.conversation):
    texts.update({f"conversation[{i}].role": role, f"conversation[{i}].text": text})
  for name, text in texts.items():
    as_text(text, name)
  if c.conversation:
    check_conversation(c.conversation, len(c.media))
  content_text = [c.title, c.description, c.text] + [
      t for s in c.scenes for t in (s.asr, s.ocr, *s.captions)] + [t for _, t in c.conversation]
  if not any(t.strip() for t in content_text):
    raise RecordError("empty_text", "title, description, text, all scene texts and the conversation are empty")
  for name in ("likes", "views", "upvotes"):
    as_count(getattr(b, name), name)
  as_count(who.followers, "followers")
  if record.time is not None:
    as_date(record.time, "time")
  if b.replay is not None:
    for i, v in enumerate(b.replay):
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RecordError("wrong_type", f"replay[{i}]={v!r:.40}")
      if not math.isfinite(v):
        raise RecordError("non_finite", f"replay[{i}]={v}")
      if not 0 <= v <= 100:
        raise RecordError("out_of_range", f"replay[{i}]={v} not in 0-100")
    if c.scenes and len(b.replay) != len(c.scenes):
      raise RecordError("out_of_range", f"{len(b.replay)} replay values for {len(c.scenes)} scenes")
  loaded = []
  for i, m in enumerate(c.media):
    m, frames = load_media(m, media_root)
    # A video holds one keyframe per scene (the templates pick scene i's frame i): check it here, at
    # build time, rather than failing in a training worker.
    if m.kind == "video" and c.scenes and frames < len(c.scenes):
      raise RecordError("missing_keyframes", f"media[{i}] {m.path}: {frames} frames for {len(c.scenes)} scenes")
    loaded.append(m)
  return dataclasses.replace(record, content=dataclasses.replace(c, media=tuple(loaded)))


def check_conversation(conversation: tuple[tuple[str, str], ...], num_media: int) -> None:
  """Raises RecordError unless the turns alternate human, gpt, ..., end with gpt, none is empty, and
  the human turns hold exactly one `<image>` per media item (gpt turns none)."""
  for i, (role, _) in enumerate(conversation):
    if role not in ROLES:
      raise RecordError("bad_role", f"conversation[{i}] is from {role!r:.30}, not one of {', '.join(ROLES)}")
  for i, (role, text) in enumerate(conversation):
    if role != ROLES[i % 2]:
      raise RecordError("bad_turn_order", f"conversation[{i}] is {role}, expected {ROLES[i % 2]} "
                        "(turns alternate human, gpt, starting with human)")
    if not text.strip():
      raise RecordError("empty_text", f"conversation[{i}] ({role}) is empty")
    if role == "gpt" and IMAGE in text:
      raise RecordError("image_token_mismatch", f"conversation[{i}] is a gpt turn holding {IMAGE}")
  if conversation[-1][0] != "gpt":
    raise RecordError("bad_turn_order", f"the last turn, conversation[{len(conversation) - 1}], is human: "
                      "it has no answer")
  placeholders = sum(text.count(IMAGE) for role, text in conversation if role == "human")
  if placeholders != num_media:
    raise RecordError("image_token_mismatch", f"{placeholders} {IMAGE} placeholders for {num_media} media items")


class ImplicitRoot(str):
  """A media root nobody named (the folder next to the input): relative paths resolve under it, but an
  absolute path is allowed only under a root the user named with --media-root."""


@dataclasses.dataclass(frozen=True)
class MediaRoots:
  """Several media roots (`lcbm data build --media-root A --media-root B`): relative paths resolve under
  `root`; any path may resolve inside `root` or one of `extra`. Usable wherever one root path is
  (`os.fspath` gives `root`)."""
  root: str
  extra: tuple[str, ...] = ()

  def __fspath__(self) -> str:
    return self.root

  @classmethod
  def of(cls, roots) -> str | MediaRoots | None:
    """None, one path, or a list of paths (the first resolves relative paths) -> a media_root value."""
    if roots is None or isinstance(roots, (str, os.PathLike)):
      return roots
    roots = [os.fspath(r) for r in roots]
    if not roots:
      return None
    return roots[0] if len(roots) == 1 else cls(roots[0], tuple(roots[1:]))


def media_path(ref: MediaRef, media_root: str | os.PathLike | None) -> str:
  """Where a media item lives: `ref.path` resolved (symlinks included) against the resolved media root.

  A path that resolves outside the root (`../`, an absolute path elsewhere, a symlink that leads out)
  and outside every extra root (`MediaRoots`) is RecordError("media_outside_root") before anything is
  opened. Without a root (library use on paths the caller chose) the path is taken as it is. A root
  on an object store (gs://) holds no symlinks: there `..` and `.` are folded in the key and the
  result must lie under the root's prefix.
  """
  if media_root is None:
    return ref.path
  absolute = os.path.isabs(ref.path) or paths.is_remote(ref.path)
  if absolute and isinstance(media_root, ImplicitRoot):
    raise RecordError("media_outside_root", f"{ref.path} is an absolute path: name the directory that holds it "
                      "with --media-root (which may be repeated)")
  root = _resolved(os.fspath(media_root))
  roots = [root] + [_resolved(r) for r in getattr(media_root, "extra", ())]
  path = _resolved(ref.path if absolute else paths.join(root, ref.path))
  if not any(_inside(path, r) for r in roots):
    where = f"the media root {root}" if len(roots) == 1 else f"every media root ({', '.join(roots)})"
    raise RecordError("media_outside_root", f"{ref.path} resolves to {path}, outside {where} "
                      "(name the directory that holds it with --media-root, which may be repeated)")
  return path


def _resolved(p: str) -> str:
  return paths.normpath(p) if paths.is_remote(p) else os.path.realpath(p)


def _inside(path: str, root: str) -> bool:
  if paths.is_remote(root) or paths.is_remote(path):
    return paths.is_remote(root) and (path == root or path.startswith(root.rstrip("/") + "/"))
  return os.path.commonpath([root, path]) == root


def _read_regular_file(path: str, shown: str) -> bytes:
  """The bytes of a regular file, opened once and read at most MAX_MEDIA_BYTES + 1 bytes far.

  No-follow and non-blocking, so a symlink swapped in after `media_path` or a FIFO cannot redirect
  or hang the read; `fstat` of the open file decides, so a directory, device or socket is never read.
  An object (gs://) is read through `lcbm_jax.paths`, as far as the same bound.
  """
  if paths.is_remote(path):
    return _read_object(path, shown)
  flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
  try:
    fd = os.open(path, flags)
  except FileNotFoundError:
    raise RecordError("missing_media", f"{shown} not found") from None
  except IsADirectoryError:
    raise RecordError("not_regular_file", f"{shown} is a directory") from None
  except OSError as e:
    raise RecordError("missing_media", f"{shown}: {e.strerror}") from None
  try:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
      kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
              "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
              else "not a regular file")
      raise RecordError("not_regular_file", f"{shown} is {kind}")
    chunks, size = [], 0
    while size <= MAX_MEDIA_BYTES:
      chunk = os.read(fd, min(1 << 20, MAX_MEDIA_BYTES + 1 - size))
      if not chunk:
        break
      chunks.append(chunk)
      size += len(chunk)
    return b"".join(chunks)
  finally:
    os.close(fd)


def _read_object(url: str, shown: str) -> bytes:
  try:
    with paths.open_read(url) as f:
      return f.read(MAX_MEDIA_BYTES + 1)
  except FileNotFoundError:
    raise RecordError("missing_media", f"{shown} not found") from None
  except IsADirectoryError:
    raise RecordError("not_regular_file", f"{shown} is a directory") from None
  except OSError as e:
    raise RecordError("missing_media", f"{shown}: {e}"[:300]) from None


def read_media_bytes(ref: MediaRef, media_root: str | os.PathLike | None) -> bytes:
  """The encoded bytes of a media item (from `ref.data` or its file); RecordError if it is outside the
  media root, not a regular file, absent, empty or huge."""
  data = ref.data if ref.data is not None else _read_regular_file(media_path(ref, media_root), ref.path)
  if len(data) > MAX_MEDIA_BYTES:
    raise RecordError("huge_media", f"{ref.path}: more than {MAX_MEDIA_BYTES} bytes")
  if not data:
    raise RecordError("corrupt_media", f"{ref.path}: zero bytes")
  return data


def load_media(ref: MediaRef, media_root: str | os.PathLike | None = None) -> tuple[MediaRef, int]:
  """Reads a media item once (or takes `ref.data`) and fully decodes every frame; returns the ref
  with its bytes and the frame count, or raises RecordError."""
  if ref.kind not in ("image", "video"):
    raise RecordError("wrong_type", f"media kind {ref.kind!r} is not 'image' or 'video'")
  data = read_media_bytes(ref, media_root)
  return dataclasses.replace(ref, data=data), _decode_all(ref, data)


def _decode_all(ref: MediaRef, data: bytes) -> int:
  try:
    # verify() checks chunk CRCs and completeness (a PNG cut after its pixels still load()s).
    with Image.open(io.BytesIO(data)) as img:
      img.verify()
    with Image.open(io.BytesIO(data)) as img:
      width, height = img.size
      if width * height > MAX_MEDIA_PIXELS:
        raise RecordError("huge_media", f"{ref.path}: {width}x{height} pixels")
      if img.mode not in SUPPORTED_MODES:
        raise RecordError("unsupported_media", f"{ref.path}: mode {img.mode}")
      frames = getattr(img, "n_frames", 1)
      if frames > MAX_VIDEO_FRAMES:
        raise RecordError("huge_media", f"{ref.path}: {frames} frames")
      for i in range(frames):
        img.seek(i)
        img.load()
      return frames
  except RecordError:
    raise
  except Image.DecompressionBombError as e:
    raise RecordError("huge_media", f"{ref.path}: {e}") from None
  except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as e:
    raise RecordError("corrupt_media", f"{ref.path}: {type(e).__name__}: {e}") from None


def _lists(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _lists(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_lists(v) for v in x]
  return x
