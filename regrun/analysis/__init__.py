"""Analysis of finished (or unfinished) runs, from their files alone and without torch:
run discovery, the comparison table, plots and the sweep summary."""
