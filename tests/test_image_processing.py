"""Image preprocessing against transformers' own image processors, never against ourselves.

For CLIPImageProcessor (crop == shortest edge, crop < shortest edge, another filter and normalisation)
and LlavaImageProcessor (LLaVA-1.5's pad to square, with and without the crop), on 50x30 and 30x50 RGB,
RGBA, grayscale and transparent-palette images: our pixels equal the processor's to 1e-6, built
directly, loaded by `AutoProcessor` / `LlavaProcessor.from_pretrained` from a directory written by
hand or by transformers' `save_pretrained`, and from the files our export writes. `processing_from_hf`
round-trips through `processing_to_hf`; every setting it cannot reproduce is one UserError naming it.

The reference is the PIL backend, what `from_pretrained` gives by default without torchvision (this
project's environment). With torchvision installed transformers 5 defaults to its torchvision backend,
whose bicubic resize rounds a few pixels differently (data_pipeline/images.py): then the default is
checked within two levels and `backend="pil"` to 1e-6.
"""
import dataclasses
import io
import json
import types

import numpy as np
import pytest
from PIL import Image

import hf_helpers as H  # noqa: F401  (keeps torch on one thread)
from data_pipeline import images, pipeline
from lcbm_jax import inference_images
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import presets
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train

MEAN, STD = list(presets.CLIP_MEAN), list(presets.CLIP_STD)

# name -> (transformers class, constructor settings)
CONFIGS = {
    "clip": ("CLIPImageProcessor", dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    "clip_crop_below_edge": ("CLIPImageProcessor",
                             dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})),
    "clip_bilinear_half": ("CLIPImageProcessor",
                           dict(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, resample=2,
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])),
    "llava_no_pad": ("LlavaImageProcessor", dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    "llava_pad": ("LlavaImageProcessor",
                  dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_pad=True)),
    "llava_pad_crop_below_edge": ("LlavaImageProcessor", dict(size={"shortest_edge": 40},
                                                              crop_size={"height": 32, "width": 32}, do_pad=True)),
    "llava_pad_no_crop": ("LlavaImageProcessor", dict(size={"shortest_edge": 32}, crop_size={"height": 24, "width": 24},
                                                      do_pad=True, do_center_crop=False)),
}


def _images() -> dict:
  rng = np.random.default_rng(0)

  def rgb(w, h):
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")

  rgba = rgb(50, 30).convert("RGBA")
  rgba.putalpha(Image.fromarray(rng.integers(0, 256, (30, 50), dtype=np.uint8), "L"))
  palette = rgb(50, 30).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  palette.info["transparency"] = 3
  return {"rgb_50x30": rgb(50, 30), "rgb_30x50": rgb(30, 50), "rgba_50x30": rgba,
          "gray_30x50": Image.fromarray(rng.integers(0, 256, (50, 30), dtype=np.uint8), "L"),
          "palette_transparent_50x30": palette}


IMAGES = _images()


def _pil_class(name: str):
  import transformers
  return getattr(transformers, name + "Pil")


def _hf_processor(name: str, **settings):
  return _pil_class(name)(**settings)


def _pixels(proc, img) -> np.ndarray:
  """float32[H, W, 3] from a transformers processor (a full LlavaProcessor or an image processor)."""
  if hasattr(proc, "tokenizer"):
    out = proc(images=[img], text="<image>", return_tensors="np")
  else:
    out = proc(images=img, return_tensors="np")
  return np.asarray(out["pixel_values"][0]).transpose(1, 2, 0)


def _image_processor(proc):
  return getattr(proc, "image_processor", proc)


def _assert_default_matches(load, ours, img, label):
  """`load(**kwargs)` -> a processor from a directory, as from_pretrained gives it by default."""
  proc = load()
  got = _pixels(proc, img)
  if _image_processor(proc).backend == "pil":
    np.testing.assert_allclose(got, ours, atol=1e-6, rtol=0, err_msg=label)
    return
  # torchvision installed: its resize rounds differently, by at most 2 levels, on ~0.5% of the pixels
  # for bicubic and ~7% for bilinear (see data_pipeline/images.py).
  step = 1 / 255 / min(_image_processor(proc).image_std)
  diff = np.abs(got - ours)
  assert diff.max() <= 2 * step + 1e-5 and (diff > 1e-6).mean() < 0.15, (label, diff.max(), (diff > 1e-6).mean())
  np.testing.assert_allclose(_pixels(load(backend="pil"), img), ours, atol=1e-6, rtol=0, err_msg=label)


def _tokenizer():
  """A transformers tokenizer that knows `<image>` (LlavaProcessor needs one; its ids do not matter here)."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  t = Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1, "a": 2}, unk_token="<unk>"))
  t.pre_tokenizer = pre_tokenizers.Whitespace()
  return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", additional_special_tokens=["<image>"])


def _llava_processor(image_processor):
  from transformers import LlavaProcessor
  return LlavaProcessor(image_processor=image_processor, tokenizer=_tokenizer(), patch_size=8,
                        vision_feature_select_strategy="default", num_additional_image_tokens=1)


def _ours(p: images.ImageProcessing) -> dict:
  return {k: images.preprocess(img, p) for k, img in IMAGES.items()}


# ---------------------------------------------------------------- pixels


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pixels_equal_the_processor(config):
  name, settings = CONFIGS[config]
  proc = _hf_processor(name, **settings)
  p = images.processing_from_hf(proc.to_dict())
  for label, img in IMAGES.items():
    ref = _pixels(proc, img)
    ours = images.preprocess(img, p)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (p.crop_size, p.crop_size, 3), label
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0, err_msg=f"{config} {label}")


@pytest.mark.parametrize("config", ["clip", "clip_crop_below_edge", "llava_pad", "llava_pad_no_crop"])
def test_directories_saved_by_transformers(config, tmp_path):
  from transformers import AutoImageProcessor, AutoProcessor, LlavaProcessor
  name, settings = CONFIGS[config]
  # A LlavaProcessor directory: transformers 5 nests the image processor in processor_config.json.
  _llava_processor(_hf_processor(name, **settings)).save_pretrained(tmp_path / "llava")
  assert not (tmp_path / "llava" / "preprocessor_config.json").exists()
  # An image processor alone: preprocessor_config.json.
  _hf_processor(name, **settings).save_pretrained(tmp_path / "alone")
  for d, loaders in ((tmp_path / "llava", (AutoProcessor, LlavaProcessor)), (tmp_path / "alone", (AutoImageProcessor,))):
    # 32 px out of each (llava_pad_no_crop: the padded square at its shortest edge, crop_size unused).
    cfg = dataclasses.replace(_cfg(32), **inference_images.fields_from_dir(str(d), 32))
    ours = _ours(inference_images.image_processing(cfg))
    for cls in loaders:
      for label, img in IMAGES.items():
        _assert_default_matches(lambda **kw: cls.from_pretrained(str(d), **kw), ours[label], img,
                                f"{config} {d.name} {cls.__name__} {label}")


def _cfg(image_size: int) -> presets.LCBMConfig:
  cfg = presets.get("tiny")
  return dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=image_size))


def test_directory_with_a_hand_written_preprocessor_config(tmp_path):
  """As llava-hf's LLaVA-1.5 directories: preprocessor_config.json naming LlavaProcessor, beside a
  processor_config.json without an image processor entry, and tokenizer files."""
  from transformers import AutoProcessor, LlavaProcessor
  _tokenizer().save_pretrained(tmp_path)
  (tmp_path / "processor_config.json").write_text(json.dumps(
      {"processor_class": "LlavaProcessor", "patch_size": 8, "vision_feature_select_strategy": "default",
       "num_additional_image_tokens": 1, "image_token": "<image>"}))
  for pad in (False, True):
    pre = {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True,
           "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": MEAN,
           "image_processor_type": "LlavaImageProcessor" if pad else "CLIPImageProcessor", "image_std": STD,
           "processor_class": "LlavaProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
           "size": {"shortest_edge": 40}, **({"do_pad": True} if pad else {})}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    cfg = dataclasses.replace(_cfg(32), **inference_images.fields_from_dir(str(tmp_path), 32))
    assert (cfg.image_shortest_edge, cfg.image_pad_to_square) == (40, pad)
    ours = _ours(inference_images.image_processing(cfg))
    for cls in (AutoProcessor, LlavaProcessor):
      for label, img in IMAGES.items():
        _assert_default_matches(lambda **kw: cls.from_pretrained(str(tmp_path), **kw), ours[label], img,
                                f"pad={pad} {cls.__name__} {label}")


def test_legacy_clip_feature_extractor_config(tmp_path):
  """openai/clip-vit-large-patch14-336's spelling (sizes as ints, CLIPFeatureExtractor), scaled down."""
  from transformers import AutoImageProcessor
  pre = {"crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
         "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": MEAN, "image_std": STD, "resample": 3,
         "size": 32}
  (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
  ours = _ours(images.processing_from_hf(pre))
  for label, img in IMAGES.items():
    _assert_default_matches(lambda **kw: AutoImageProcessor.from_pretrained(str(tmp_path), **kw), ours[label], img,
                            label)


def test_export_writes_the_models_processing(tmp_path):
  """A pad-to-square model with a larger shortest edge -> our processor files -> AutoProcessor's pixels
  equal `lcbm predict`'s (load_model_images) and the training pipeline's (DecodeMedia, via pipeline_config)."""
  from transformers import AutoProcessor
  cfg = dataclasses.replace(_cfg(32), image_shortest_edge=40, image_pad_to_square=True, image_resample=2)
  _tokenizer().save_pretrained(tmp_path)
  hf._write_processor(str(tmp_path), cfg, "<image>")
  pc = train.pipeline_config(config_lib.base_config(), cfg, "unused")
  decode = pipeline.DecodeMedia(pc.image_size, pc.image_mean, pc.image_std, shortest_edge=pc.image_shortest_edge,
                                resample=pc.image_resample, pad_to_square=pc.image_pad_to_square)
  for label, img in IMAGES.items():
    path = tmp_path / f"{label}.png"
    img.save(path)
    ours = inference_images.load_model_images([str(path)], cfg)[0, 0]
    media = types.SimpleNamespace(data=path.read_bytes())
    elem = decode.map({"quarantine": None, "verbalized": types.SimpleNamespace(media=[media], frame_indices=[0])})
    np.testing.assert_array_equal(elem["images"][0], ours)
    with Image.open(path) as reread:
      _assert_default_matches(lambda **kw: AutoProcessor.from_pretrained(str(tmp_path), **kw), ours, reread, label)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_from_hf_round_trips_through_to_hf(config):
  name, settings = CONFIGS[config]
  saved = json.loads(_hf_processor(name, **settings).to_json_string())   # what save_pretrained writes
  p = images.processing_from_hf(saved)
  written = images.processing_to_hf(p)
  assert images.processing_from_hf(written) == p
  assert images.processing_from_hf({"processor_class": "LlavaProcessor", "image_processor": written}) == p
  # transformers reads what we write as the same processing.
  back = _pil_class(written["image_processor_type"]).from_dict(written)
  for label, img in IMAGES.items():
    np.testing.assert_allclose(_pixels(back, img), images.preprocess(img, p), atol=1e-6, rtol=0, err_msg=label)
  if settings.get("do_center_crop", True):   # same values, key for key, as transformers' own save
    assert {k: v for k, v in written.items() if k != "image_processor_type"} == \
        {k: saved[k] for k in written if k != "image_processor_type"}


def test_model_config_carries_the_processing():
  cfg = presets.get("llava-1.5-7b")
  old = cfg.to_dict()
  for k in ("image_shortest_edge", "image_resample", "image_pad_to_square"):
    del old[k]   # a config saved before these fields existed
  assert presets.LCBMConfig.from_dict(old) == cfg
  assert inference_images.image_processing(cfg) == images.ImageProcessing(crop_size=336, mean=presets.CLIP_MEAN,
                                                                          std=presets.CLIP_STD, shortest_edge=336)
  # llava-hf's LLaVA-1.5 preprocessor (CLIPImageProcessor, 336) leaves the preset's defaults as they are.
  llava_hf = {"crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
              "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": MEAN,
              "image_processor_type": "CLIPImageProcessor", "image_std": STD, "processor_class": "LlavaProcessor",
              "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}
  assert dataclasses.replace(cfg, **inference_images.fields_from_preprocessor(llava_hf, 336)) == cfg
  padded = dataclasses.replace(cfg, **inference_images.fields_from_preprocessor(
      {**llava_hf, "image_processor_type": "LlavaImageProcessor", "do_pad": True}, 336))
  assert padded.image_pad_to_square and presets.LCBMConfig.from_dict(padded.to_dict()) == padded
  assert hf.image_processor_config(padded)["do_pad"] is True
  with pytest.raises(UserError, match="image_size 224"):
    inference_images.fields_from_preprocessor(llava_hf, 224)
  for bad in (dict(image_shortest_edge=300), dict(image_resample=7), dict(image_pad_to_square=1)):
    with pytest.raises(UserError, match=next(iter(bad))):
      dataclasses.replace(cfg, **bad)


def test_a_directory_without_a_preprocessor_keeps_the_defaults(tmp_path):
  (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "LlavaProcessor"}))
  assert inference_images.fields_from_dir(str(tmp_path), 32) == {}


_BASE = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
         "crop_size": {"height": 32, "width": 32}}


@pytest.mark.parametrize("change, named", [
    ({"image_processor_type": "SiglipImageProcessor"}, "image_processor_type='SiglipImageProcessor'"),
    ({"image_processor_type": "LlavaNextImageProcessor"}, "LlavaNextImageProcessor"),
    ({"size": {"height": 32, "width": 32}}, "size="),
    ({"size": {"shortest_edge": 32, "longest_edge": 64}}, "longest_edge"),
    ({"crop_size": {"height": 32, "width": 24}}, "crop_size="),
    ({"crop_size": {"height": 48, "width": 48}}, "crop_size 48"),
    ({"do_center_crop": False}, "do_center_crop=False"),
    ({"do_normalize": False}, "do_normalize=False"),
    ({"do_rescale": False}, "do_rescale=False"),
    ({"do_resize": False}, "do_resize=False"),
    ({"do_convert_rgb": False}, "do_convert_rgb=False"),
    ({"rescale_factor": 1 / 127.5}, "rescale_factor="),
    ({"do_pad": True}, "do_pad=True on CLIPImageProcessor"),
    ({"image_processor_type": None, "do_pad": True}, "do_pad=True without image_processor_type"),
    ({"resample": 9}, "resample 9"),
    ({"image_mean": [0.5, 0.5]}, "image_mean="),
    ({"use_square_size": True}, "use_square_size"),
    ({"image_grid_pinpoints": [[336, 672]]}, "image_grid_pinpoints"),
])
def test_unsupported_settings_are_named(change, named):
  with pytest.raises(UserError) as e:
    images.processing_from_hf({**_BASE, **change})
  message = str(e.value)
  assert named in message and "\n" not in message, message


def test_pipeline_rejects_bad_image_settings_at_build_time():
  with pytest.raises(UserError, match="shortest edge 16"):
    pipeline.DecodeMedia(32, MEAN, STD, shortest_edge=16)
  with pytest.raises(UserError, match="mean"):
    pipeline.DecodeMedia(32, None, STD)
  buf = io.BytesIO()
  IMAGES["rgb_50x30"].save(buf, "PNG")
  with pytest.raises(UserError, match="resample"):
    pipeline.decode_image(buf.getvalue(), 0, 32, MEAN, STD, resample=8)
