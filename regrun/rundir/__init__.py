"""The run directory on disk: its files, the one-writer lock, checkpoints, resuming, and
the trackers (TensorBoard, MLflow) that mirror its metrics."""
