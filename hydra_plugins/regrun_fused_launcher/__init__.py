"""regrun's fused launcher for Hydra: `regrun -m hydra/launcher=fused ...` (regrun/cli/fused.py)."""
