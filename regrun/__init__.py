"""regrun: a command-line experiment runner for regularization research in PyTorch."""

__version__ = "0.1.0"
