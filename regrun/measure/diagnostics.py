"""Warnings a careful researcher would give about a finished run, from its figures alone.

Each check reads the run's last metrics row, its resolved targets and its per-layer
statistics (the plain data summary.json holds), and says what it saw in one sentence
with the figures that triggered it. λ = 1 on the L1 of all 50k weights of a small MLP,
for instance, trains a model at chance whose loss is 97% penalty, and nothing says so.

    penalty_dominates   the weighted penalties are most of the training loss
    chance_level        the task's headline figure is no better than a trivial predictor
    dead_layer          every unit of a targeted activation layer is zero on the test set
    zeroed_tensor       every entry of a targeted parameter is zero
    lambda_negligible   a penalty that is a vanishing share of the loss changes nothing
    subgradient_l1      L1 by gradient gives no exact zeros; proximal: true does
    double_l2           an L2 penalty on parameters the optimizer also decays
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regrun.layout import EPOCH, PENALTY_TOTAL, TASK_LOSS, TOTAL_LOSS, penalty_column

DOMINANT_SHARE = 0.5  # penalty share of the total loss above which the penalty dominates
NEGLIGIBLE_SHARE = 1e-4  # weighted penalty / task loss below which λ changes nothing
CHANCE_MARGIN = 0.02  # a headline within this of the trivial predictor's is at chance


@dataclass(frozen=True)
class Chance:
    """The task's headline figure and what a trivial predictor scores on it."""

    column: str  # e.g. test_acc
    trivial: float  # e.g. the majority class's share of the test set
    higher_is_better: bool
    what: str  # how the trivial predictor is made, for the message
    loss: float | None = None  # the trivial predictor's task loss: what learning nothing costs


def diagnose(rows: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
             sparsity: Mapping[str, Any] | None, chance: Chance | None = None,
             weight_decay: float = 0.0, grouped: bool = False) -> list[dict[str, str]]:
    """Every warning that applies to a run's metrics rows (the last is its final figures),
    as {"code", "message"} records, in the order above. `weight_decay` is the optimizer's;
    `grouped`: the optimizer has parameter groups (which tensors decay is in groups.json)."""
    final = rows[-1] if rows else {}
    found: list[tuple[str, str]] = []
    found += _penalty_dominates(rows, chance)
    found += _chance_level(final, chance)
    found += _dead_or_zeroed(targets, sparsity or {})
    found += _negligible(final, targets)
    found += _subgradient_l1(targets, sparsity or {})
    found += _double_l2(targets, weight_decay, grouped)
    return [{"code": code, "message": message} for code, message in found]


def _penalty_dominates(rows: Sequence[Mapping[str, Any]], chance: Chance | None) -> list[tuple[str, str]]:
    """The epoch where the penalties were the largest share of the loss, if over half and
    (when the task says what learning nothing costs) more than that: a well-learned task's
    loss near 0 makes any penalty most of the total without the penalty being too strong."""
    shares = [(row[PENALTY_TOTAL] / row[TOTAL_LOSS], row) for row in rows
              if row.get(TOTAL_LOSS) and row.get(PENALTY_TOTAL) is not None]
    if not shares:
        return []
    share, row = max(shares, key=lambda pair: pair[0])
    trivial = chance.loss if chance is not None else None
    if share <= DOMINANT_SHARE or (trivial is not None and row[PENALTY_TOTAL] <= trivial):
        return []
    when = f" in epoch {row[EPOCH]}" if EPOCH in row and len(rows) > 1 else ""
    beyond = f", more than the loss of learning nothing ({trivial:.4g})" if trivial is not None else ""
    return [("penalty_dominates", f"the penalties were {share:.0%} of the training loss{when} "
                                  f"({row[PENALTY_TOTAL]:.4g} of {row[TOTAL_LOSS]:.4g}){beyond}: λ is likely too "
                                  "large for the task to be learned")]


def _chance_level(final: Mapping[str, Any], chance: Chance | None) -> list[tuple[str, str]]:
    if chance is None or chance.column not in final:
        return []
    value = final[chance.column]
    gain = value - chance.trivial if chance.higher_is_better else chance.trivial - value
    if gain > CHANCE_MARGIN:
        return []
    return [("chance_level", f"{chance.column} = {value:.4g} is at chance level: {chance.what} scores "
                             f"{chance.trivial:.4g}; the model learned nothing the task measures")]


def _dead_or_zeroed(targets: Sequence[Mapping[str, Any]], sparsity: Mapping[str, Any]) -> list[tuple[str, str]]:
    activations = sparsity.get("activations", {})
    weights = {row["name"]: row for row in sparsity.get("weights", [])}
    found = []
    for row in _unique_tensors(targets):
        name = row["tensor"]
        if row["site"] == "activations":
            stats = activations.get(name, {})
            if stats.get("units") and stats.get("dead_units") == stats["units"]:
                found.append(("dead_layer", f"every unit of {name} (targeted by {row['target']}) is zero on every "
                                            f"test sample: the layer is dead and passes nothing on"))
        elif weights.get(name, {}).get("zero_frac") == 1.0:
            found.append(("zeroed_tensor", f"every entry of {name} (targeted by {row['target']}) is exactly zero"))
    return found


def _negligible(final: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    task = final.get(TASK_LOSS)
    found = []
    for name, lam in _lambdas(targets).items():
        weighted = final.get(penalty_column(name, "weighted"))
        if not task or not lam or weighted is None or weighted / task >= NEGLIGIBLE_SHARE:
            continue
        found.append(("lambda_negligible", f"{name}: λ·penalty = {weighted:.3g} is {weighted / task:.1e} of the "
                                           f"task loss ({task:.4g}); λ = {lam:g} is too small to change anything"))
    return found


def _subgradient_l1(targets: Sequence[Mapping[str, Any]], sparsity: Mapping[str, Any]) -> list[tuple[str, str]]:
    weights = {row["name"]: row for row in sparsity.get("weights", [])}
    found = []
    for name, rows in _by_target(targets).items():
        first = rows[0]
        if first["penalty"] != "l1" or first["site"] == "activations" or first.get("proximal") or not first["lambda"]:
            continue
        stats = [weights[r["tensor"]] for r in rows if r["tensor"] in weights]
        numel = sum(s["numel"] for s in stats)
        zeros = sum(s["zero_frac"] * s["numel"] for s in stats) / numel if numel else 0.0
        if zeros < 0.01:
            found.append(("subgradient_l1", f"{name}: L1 by gradient steps leaves {zeros:.1%} of its weights exactly "
                                            "zero (steps jump over 0); read the below_<t> fractions, or set "
                                            f"reg.targets.{name}.proximal=true for exact zeros"))
    return found


def _double_l2(targets: Sequence[Mapping[str, Any]], decay: float, grouped: bool) -> list[tuple[str, str]]:
    if not decay or grouped:
        return []  # with param groups, which tensors decay is in groups.json
    return [("double_l2", f"{name}: an L2 penalty on parameters that optimizer.weight_decay={decay:g} also "
                          "shrinks: two L2 terms, so neither λ means what it says")
            for name, rows in _by_target(targets).items()
            if rows[0]["penalty"] == "l2" and rows[0]["site"] != "activations" and rows[0]["lambda"]]


def _by_target(targets: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in targets:
        grouped.setdefault(row["target"], []).append(row)
    return grouped


def _lambdas(targets: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {name: rows[0]["lambda"] for name, rows in _by_target(targets).items()}


def _unique_tensors(targets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    seen: dict[str, Mapping[str, Any]] = {}
    for row in targets:
        seen.setdefault(row["tensor"], row)
    return list(seen.values())
