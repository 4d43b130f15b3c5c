"""TFDS builder for cbc corpora; see cbc.py."""
