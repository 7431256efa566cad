"""Running jobs: one run from its config to its run directory, a fused group of runs,
what a person watches while they train, stop signals, and a sweep's objective."""
