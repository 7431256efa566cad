"""Warnings a careful researcher would give about a finished run, from its figures alone.

Each check reads the run's metrics rows (the last is its final figures), its resolved
targets, its per-layer statistics (the plain data summary.json holds) and its optimizer
groups, and says what it saw in one line: the target or layer, the figure that triggered
it and what to try. λ = 1 on the L1 of all 50k weights of a small MLP, for instance,
trains a model at chance whose loss is 97% penalty, and nothing says so.

    penalty_dominates   the backpropagated penalties are most of the training loss
    chance_level        the task's headline figure is no better than a trivial predictor
    loss_exploded       a loss ends orders of magnitude above learning nothing's, or far
                        above its first epoch's, while staying finite
    dead_layer          every unit of a targeted activation layer is zero on the test set
    mostly_dead         more than half of them are
    zeroed_tensor       every entry of a targeted parameter is zero
    lambda_negligible   a penalty that is a vanishing share of the loss changes nothing
    subgradient_l1      L1 by gradient pulls weights near 0 but none to 0; proximal: true does
    double_l2           an L2 penalty on parameters the optimizer also decays
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regrun.layout import (
    EPOCH,
    GROUPS,
    PENALTY_TOTAL,
    TASK_LOSS,
    TOTAL_LOSS,
    lambda_column,
    penalty_column,
    split_figure,
)
from regrun.measure.sparsity import threshold_key

DOMINANT_SHARE = 0.5  # penalty share of the total loss above which the penalty dominates
NEGLIGIBLE_SHARE = 1e-4  # weighted penalty / task loss below which λ changes nothing
CHANCE_MARGIN = 0.02  # a headline within this of the trivial predictor's is at chance
# A loss 100× what predicting the trivial answer costs has not learned badly, it has diverged;
# 10× its first epoch's, and worse than learning nothing, is training undoing itself. Sane
# runs end far below both (bench/diagnostics_precision.py).
EXPLODED_VS_TRIVIAL = 100.0
EXPLODED_VS_FIRST = 10.0
# Past half, most of the width the config asked for passes nothing on. SAELens reports dead
# latents as this fraction; a healthy ReLU layer has a few percent.
MOSTLY_DEAD = 0.5
# L1 by gradient steps leaves weights hovering within about one step of 0 (Adam's lr 1e-3)
# instead of at 0. A default init leaves 2.8% of an MNIST layer's weights below 1e-3 (uniform
# in ±1/√784); the presets' default λ = 1e-5 leaves 9 to 38% there (the MLP and the CNN,
# bench/diagnostics_precision.py), a sane amount of shrinking. Past half of them within 1e-3
# of 0, with fewer than 1% exactly 0, L1 has made the layer sparse in all but name, and a
# proximal step would make it so (λ = 1e-4 to 1e-3 and thread 004 reach 56 to 100%).
NEAR_ZERO = 1e-3
NEAR_ZERO_SHARE = 0.5
EXACT_ZERO_SHARE = 0.01
L2_PENALTIES = ("l2", "elastic_net")  # penalties with a Σw² term

# Every warning's code and when it fires, in the order `diagnose` reports them: the
# documentation's table is generated from this (docs/hooks/reference.py), and a test checks
# that the checks below emit these codes and no other.
CODES: Mapping[str, str] = {
    "penalty_dominates": "in some epoch the backpropagated penalties were over half of the training loss *and* more "
                         "than the loss of a model that learned nothing (a task learned to a loss near 0 makes any "
                         "penalty most of the total without it being too strong); a `proximal` target's term is left "
                         "out, since it is never in the gradient",
    "chance_level": "the task's headline figure is within 0.02 of the trivial predictor's, scored by the task's own "
                    "figures: the label frequencies for classification (the most frequent class's share), the mean "
                    "target for regression (R² = 0), the mean input value for reconstruction",
    "loss_exploded": "the final training or test loss is over 100× the trivial predictor's, or over 10× its first "
                     "epoch's and above the trivial predictor's: the run diverged and still ended finite (AdamW at "
                     "lr 10⁶ ends `completed` with a test loss of 10²²)",
    "dead_layer": "every unit of a targeted activation layer is zero on every test sample",
    "mostly_dead": "over half of them are (SAELens reports dead latents as this fraction): most of the width asked "
                   "for passes nothing on; lower λ or warm it up",
    "zeroed_tensor": "every entry of a targeted parameter is exactly zero",
    "lambda_negligible": "λ·penalty is below 10⁻⁴ of the task loss in the last epoch whose λ was in effect (a "
                         "schedule's window may end first): λ changes nothing (λ = 0, a baseline, says nothing; nor "
                         "does a penalty already at 0)",
    "subgradient_l1": "L1 on parameters by gradient steps left at least 10% of them below 10⁻³ (3–4× what a default "
                      "init leaves there) but under 1% exactly zero: use `proximal`",
    "double_l2": "an L2 term (`l2`, or `elastic_net` with l1_ratio < 1) on parameters that the optimizer's "
                 f"`weight_decay` also shrinks, read per parameter from its group ({GROUPS})",
}


@dataclass(frozen=True)
class Chance:
    """The task's headline figure and what a trivial predictor scores on it."""

    column: str  # e.g. test_acc
    trivial: float  # e.g. the majority class's share of the test set
    higher_is_better: bool
    what: str  # how the trivial predictor is made, for the message
    loss: float | None = None  # the trivial predictor's task loss: what learning nothing costs


Found = list[tuple[str, str]]


def diagnose(rows: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
             sparsity: Mapping[str, Any] | None, chance: Chance | None = None,
             decay: Mapping[str, float] | None = None) -> list[dict[str, str]]:
    """Every warning that applies to a run's metrics rows (the last is its final figures),
    as {"code", "message"} records, in the order above. `decay` is the optimizer's
    weight_decay of each parameter (by name), as its groups set it."""
    final = rows[-1] if rows else {}
    found: Found = []
    found += _penalty_dominates(rows, targets, chance)
    found += _chance_level(final, chance)
    found += _loss_exploded(rows, chance)
    found += _dead_or_zeroed(targets, sparsity or {})
    found += _negligible(rows, targets)
    found += _subgradient_l1(targets, sparsity or {})
    found += _double_l2(targets, decay or {})
    return [{"code": code, "message": message} for code, message in found]


def decay_by_parameter(groups: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The weight_decay in effect for each parameter, from the rows of groups.json."""
    return {name: group["options"].get("weight_decay") or 0.0 for group in groups for name in group["params"]}


def _penalty_dominates(rows: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                       chance: Chance | None) -> Found:
    """The epoch where the backpropagated penalties were the largest share of the loss, if
    over half and (when the task says what learning nothing costs) more than that: a
    well-learned task's loss near 0 makes any penalty most of the total without the penalty
    being too strong. A proximal target's term is reported but never in the gradient."""
    proximal = [name for name, group in _by_target(targets).items() if group[0].get("proximal")]
    shares = []
    for row in rows:
        if row.get(TOTAL_LOSS) is None or row.get(PENALTY_TOTAL) is None:
            continue
        aside = sum(row.get(penalty_column(name, "weighted")) or 0.0 for name in proximal)
        penalty, total = row[PENALTY_TOTAL] - aside, row[TOTAL_LOSS] - aside
        if total > 0:
            shares.append((penalty / total, penalty, total, row))
    if not shares:
        return []
    share, penalty, total, row = max(shares, key=lambda s: s[0])
    trivial = chance.loss if chance is not None else None
    if share <= DOMINANT_SHARE or (trivial is not None and penalty <= trivial):
        return []
    when = f" in epoch {row[EPOCH]}" if EPOCH in row and len(rows) > 1 else ""
    beyond = f", more than the loss of learning nothing ({trivial:.4g})" if trivial is not None else ""
    return [("penalty_dominates", f"the penalties were {share:.0%} of the training loss{when} "
                                  f"({penalty:.4g} of {total:.4g}){beyond}: λ is likely too "
                                  "large for the task to be learned; try a λ 10 to 100 times smaller")]


def _chance_level(final: Mapping[str, Any], chance: Chance | None) -> Found:
    if chance is None or chance.column not in final:
        return []
    value = final[chance.column]
    gain = value - chance.trivial if chance.higher_is_better else chance.trivial - value
    if gain > CHANCE_MARGIN:
        return []
    return [("chance_level", f"{chance.column} = {value:.4g} is at chance level: {chance.what} scores "
                             f"{chance.trivial:.4g}; the model learned nothing the task measures")]


def _loss_exploded(rows: Sequence[Mapping[str, Any]], chance: Chance | None) -> Found:
    """The first loss (training, then test) that ended EXPLODED_VS_TRIVIAL times above the
    trivial predictor's, or EXPLODED_VS_FIRST times above its first epoch's and above the
    trivial predictor's: a run can diverge and still end finite, and `completed`."""
    trivial = chance.loss if chance is not None and chance.loss else None
    for column in (TASK_LOSS, split_figure("test", "loss")):
        values = [(row.get(EPOCH), row[column]) for row in rows if row.get(column) is not None]
        if not values:
            continue
        (first_epoch, first), (_, last) = values[0], values[-1]
        vs_trivial = trivial is not None and last > EXPLODED_VS_TRIVIAL * trivial
        vs_first = len(values) > 1 and last > EXPLODED_VS_FIRST * first and (trivial is None or last > trivial)
        if vs_trivial or vs_first:
            against = (f"{last / trivial:.2g}× the loss of learning nothing ({trivial:.4g})" if vs_trivial
                       else f"{last / first:.2g}× its epoch-{first_epoch} value ({first:.4g})")
            return [("loss_exploded", f"{column} ended at {last:.4g}, {against}: training diverged while staying "
                                      "finite; lower optimizer.lr (by 10× or more) or clip the gradients")]
    return []


def _dead_or_zeroed(targets: Sequence[Mapping[str, Any]], sparsity: Mapping[str, Any]) -> Found:
    activations = sparsity.get("activations", {})
    weights = {row["name"]: row for row in sparsity.get("weights", [])}
    found = []
    for row in _unique_tensors(targets):
        name = row["tensor"]
        if row["site"] == "activations":
            found += _dead_units(name, row["target"], activations.get(name, {}))
        elif weights.get(name, {}).get("zero_frac") == 1.0:
            found.append(("zeroed_tensor", f"every entry of {name} (targeted by {row['target']}) is exactly zero; "
                                           f"lower reg.targets.{row['target']}.lambda"))
    return found


def _dead_units(name: str, target: str, stats: Mapping[str, Any]) -> Found:
    units, dead = stats.get("units"), stats.get("dead_units") or 0
    if not units or dead / units <= MOSTLY_DEAD:
        return []
    if dead == units:
        return [("dead_layer", f"every unit of {name} (targeted by {target}) is zero on every test sample: the "
                               f"layer is dead and passes nothing on; lower reg.targets.{target}.lambda")]
    return [("mostly_dead", f"{dead} of {units} units of {name} (targeted by {target}, {dead / units:.0%}) are zero "
                            f"on every test sample; lower reg.targets.{target}.lambda or warm it up "
                            f"(reg.targets.{target}.warmup_steps)")]


def _negligible(rows: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> Found:
    """Each target's weighted penalty against the task loss in the last epoch whose λ was
    in effect (a schedule's window may end before the run does). A penalty that is 0 has
    nothing left to act on, whatever λ is."""
    found = []
    for name, lam in _lambdas(targets).items():
        column, lam_now = penalty_column(name, "weighted"), lambda_column(name)
        applied = [row for row in rows if row.get(lam_now, lam) and row.get(column) and row.get(TASK_LOSS)]
        if not applied:
            continue
        row = applied[-1]
        share = row[column] / row[TASK_LOSS]
        if share >= NEGLIGIBLE_SHARE:
            continue
        effective = row.get(lam_now, lam)
        when = f" in epoch {row[EPOCH]}" if EPOCH in row and row is not rows[-1] else ""
        found.append(("lambda_negligible", f"{name}: λ·penalty = {row[column]:.3g} is {share:.1e} of the task loss "
                                           f"({row[TASK_LOSS]:.4g}){when}; λ = {effective:g} is too small to change "
                                           f"anything: try λ near {effective * 0.01 / share:.1g} (1% of the loss)"))
    return found


def _subgradient_l1(targets: Sequence[Mapping[str, Any]], sparsity: Mapping[str, Any]) -> Found:
    """L1 on parameters by gradient whose weights gathered near 0 without reaching it."""
    weights = {row["name"]: row for row in sparsity.get("weights", [])}
    near = [t for t in sparsity.get("thresholds", []) if t <= NEAR_ZERO]
    if not near:
        return []  # no recorded threshold tells how many are near 0
    key = threshold_key(max(near))
    found = []
    for name, rows in _by_target(targets).items():
        first = rows[0]
        if first["penalty"] != "l1" or first["site"] == "activations" or first.get("proximal") or not first["lambda"]:
            continue
        stats = [weights[r["tensor"]] for r in rows if r["tensor"] in weights]
        numel = sum(s["numel"] for s in stats)
        if not numel:
            continue
        zeros = sum(s["zero_frac"] * s["numel"] for s in stats) / numel
        small = sum(s.get(key, 0.0) * s["numel"] for s in stats) / numel
        if zeros < EXACT_ZERO_SHARE and small >= NEAR_ZERO_SHARE:
            found.append(("subgradient_l1", f"{name}: {small:.1%} of its weights are below {max(near):g} but "
                                            f"{zeros:.1%} exactly zero (gradient steps jump over 0): set "
                                            f"reg.targets.{name}.proximal=true for exact zeros"))
    return found


def _double_l2(targets: Sequence[Mapping[str, Any]], decay: Mapping[str, float]) -> Found:
    """An L2 term on parameters that the optimizer's weight_decay also shrinks."""
    found = []
    for name, rows in _by_target(targets).items():
        first = rows[0]
        if first["penalty"] not in L2_PENALTIES or first["site"] == "activations" or not first["lambda"]:
            continue
        if first["penalty"] == "elastic_net" and first.get("l1_ratio") == 1.0:
            continue  # pure L1
        decayed = [(r["tensor"], decay[r["tensor"]]) for r in rows if decay.get(r["tensor"])]
        if decayed:
            tensor, rate = decayed[0]
            others = f" and {len(decayed) - 1} more" if len(decayed) > 1 else ""
            found.append(("double_l2", f"{name}: an L2 penalty on {tensor}{others}, which the optimizer's "
                                       f"weight_decay={rate:g} also shrinks: two L2 terms, so neither λ means what it "
                                       "says; set one of them to 0 for these parameters"))
    return found


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
