"""Training: one run from its config to its run directory. Targets resolved against the
model, hooks that capture activations, the loop, sparsity statistics, checkpoints, the
run directory's writer and what a person watches while it trains."""
