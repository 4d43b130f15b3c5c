"""Behavior corpora to batches: records, sources, verbalization, tokenizer, TFDS, Grain."""
