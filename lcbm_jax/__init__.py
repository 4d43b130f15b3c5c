"""lcbm-jax: train Large Content and Behavior Models in JAX."""

__version__ = "0.1.0"
