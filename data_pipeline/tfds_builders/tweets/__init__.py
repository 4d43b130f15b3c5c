"""TFDS builder for tweets corpora; see tweets.py."""
