"""TFDS builder for blift corpora; see blift.py."""
