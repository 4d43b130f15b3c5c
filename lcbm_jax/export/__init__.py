"""Converters between lcbm-jax checkpoints and Hugging Face LLaVA / CLIP / Llama directories (hf.py)."""
