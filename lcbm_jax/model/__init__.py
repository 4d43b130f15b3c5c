"""The LLaVA-style model: CLIP tower (vision.py), projector (projector.py), Llama (llm.py),
their composition with image splicing and KV cache (lcbm.py), and the named shapes (presets.py)."""
