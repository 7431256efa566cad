"""Measurement: hooks that capture module outputs, sparsity statistics of weights and
activations, and the diagnostics read from a finished run's figures."""
