"""regrun's configs as a Hydra config module: `pkg://regrun.conf` (its YAML files are the config tree)."""
