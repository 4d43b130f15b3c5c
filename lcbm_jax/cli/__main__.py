"""`python -m lcbm_jax.cli ...` is `lcbm ...` (for a checkout without `pip install -e .`)."""
import sys

from lcbm_jax.cli import main

sys.exit(main())
