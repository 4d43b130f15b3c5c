"""TFDS builder for jsonl corpora; see jsonl.py."""
