"""The components a user chooses and extends, each a registry keyed by name: models,
datasets, tasks, penalties and optimizers. Configs name entries; plugins add entries
with the `register_*` functions or through entry points."""
