"""TFDS builder for LLaVA conversation corpora; see llava_json.py."""
