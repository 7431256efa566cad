"""Firing-density histograms on hand-written summaries: the counts by hand, what is read, what is drawn."""

import json
from pathlib import Path

import pytest
from fake_runs import config, final, write_run

from regrun.analysis.density_plots import density_histograms, draw_densities, log_edges
from regrun.analysis.runs import differing_keys, find_runs
from regrun.cli.compare import main as compare_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def with_densities(path: Path, densities: dict[str, list[float]]) -> None:
    """Give a fake run's summary.json per-layer tables holding these modules' densities."""
    summary = json.loads((path / "summary.json").read_text())
    summary["sparsity"] = {"activations": {m: {"type": "ReLU", "density": d} for m, d in densities.items()}}
    (path / "summary.json").write_text(json.dumps(summary))


# act1 is the fakes' targeted module; act2 is not targeted and never read.
DENSITIES = {1e-3: [[0.0, 0.0, 1e-3, 0.01, 0.5, 1.0], [0.0, 0.02, 0.02, 0.01, 0.5, 0.9]],
             1e-2: [[0.0, 0.0, 0.0, 0.0, 0.001, 0.0012], [0.0, 0.0, 0.0, 0.0, 0.0, 0.5]]}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for i, (lam, seeds) in enumerate(DENSITIES.items()):
        for seed, density in enumerate(seeds):
            path = write_run(tmp_path / f"lam{i}-seed{seed}", config(lam=lam, seed=seed), final(0.9, 0.5, lam))
            with_densities(path, {"act1": density, "act2": [0.5, 0.5]})
    return tmp_path


def test_densities_are_read_for_the_targeted_modules_only(sweep: Path) -> None:
    runs = find_runs([sweep])
    assert [run.densities for run in runs[:2]] == [{"act1": DENSITIES[1e-3][0]}, {"act1": DENSITIES[1e-3][1]}]


def test_counts_per_bin_are_the_mean_over_seeds_with_the_dead_apart(sweep: Path) -> None:
    runs = find_runs([sweep])
    histograms, edges = density_histograms(runs, differing_keys(runs))
    # The smallest density, 1e-3, opens the first decade: bins of a quarter decade from 10⁻³ to 10⁰.
    assert edges == pytest.approx([-3 + i / 4 for i in range(13)]) and edges == log_edges(runs)
    low, high = histograms
    assert (low.label, low.module, low.runs, low.units) == ("λ=0.001", "act1", 2, 6)
    assert low.dead == pytest.approx(1.5)  # 2 and 1 units that never fire
    expected = [0.0] * 12
    for density, count in ((1e-3, 1), (0.01, 2), (0.02, 2), (0.5, 2), (1.0, 1), (0.9, 1)):
        # log10: -3 → bin 0, -2 → 4, -1.70 → 5, -0.30 → 10, 0 → the last bin (11), -0.05 → 11
        expected[{1e-3: 0, 0.01: 4, 0.02: 5, 0.5: 10, 1.0: 11, 0.9: 11}[density]] += count / 2
    assert low.counts == pytest.approx(expected)
    assert high.dead == pytest.approx(4.5) and sum(high.counts) == pytest.approx(1.5)
    assert high.counts[0] == pytest.approx(1.0)  # 0.001 and 0.0012 share the first bin


def test_the_figure_says_what_it_counts_and_compare_writes_it_beside_the_plot(
        sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = find_runs([sweep])
    fig = draw_densities(runs, differing_keys(runs))
    [ax] = fig.axes
    assert ax.get_title() == "act1: 6 units" and ax.get_ylabel() == "units (mean per run over its seeds)"
    assert ax.get_xticklabels()[0].get_text() == "never\n(dead)"
    title = fig._suptitle.get_text()
    assert "(mean count over 2 seeds)" in title and "λ ∈ {0.001, 0.01} × seed ∈ {0, 1}" in title
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["λ=0.001", "λ=0.01"]
    out = tmp_path / "plots" / "f.png"
    out.parent.mkdir()
    assert compare_main([str(sweep), "--plot", str(out)]) == 0
    assert (out.parent / "f_density.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "firing densities written to" in capsys.readouterr().err
