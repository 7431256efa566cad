"""The training loop: regularization targets resolved against the model, their λ schedules,
the optimizer's parameter groups, and one loop that steps a run alone or a fused group."""
