"""Hydra's own errors said regrun's way: one line naming the override, and the fix that works
on a command line.

Hydra reports a typo in a group, an option or a key, an override it cannot parse and a value
its schema refuses in 6 to 14 lines, with advice for YAML files (`override experiment: ...`)
or a `+key=` that regrun then refuses. `explain` turns each into one line: a did-you-mean
from the config tree's groups, options and keys (difflib), `+KEY=VALUE` only where regrun
takes the new key (its settings check says so), `GROUP=OPTION` for a group already in the
defaults, `-m` or `[a,b]` for several values.
"""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from difflib import get_close_matches
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_automatic_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, OverrideType
from hydra.errors import HydraException, MissingConfigException, OverrideParseException, SearchPathException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException, ValidationError

from regrun.config import conf_dir
from regrun.errors import RegrunError, choices

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
# Hydra's words for the types of its own schemas (its launchers', sweepers', run dirs').
TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


@contextmanager
def hydra_app(config_dir: str | Path | None = None) -> Iterator[Hydra]:
    """Hydra set up as the `regrun` command sets it up: conf/, and `config_dir` (as
    `--config-dir DIR` adds it: its GROUP/NAME.yaml files become options) when given."""
    search_path = create_automatic_config_search_path(None, None, str(conf_dir()))
    if config_dir is not None:
        folder = Path(config_dir).absolute()
        if not folder.is_dir():
            raise RegrunError(f"config_dir {config_dir}: no such directory; allowed: a folder of GROUP/NAME.yaml "
                              "presets, e.g. one holding reg/my_preset.yaml")
        search_path.prepend(provider="command-line", path=f"file://{folder}", anchor="schema")
    GlobalHydra.instance().clear()
    try:
        yield Hydra.create_main_hydra2(task_name="regrun", config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


def is_hydra_error(err: BaseException) -> bool:
    """A parse or composition error of Hydra or OmegaConf (Hydra's defaults list raises a
    bare ValueError for a group given null)."""
    return isinstance(err, HydraException | OmegaConfBaseException) or (
        isinstance(err, ValueError) and str(err).startswith("Config group override must be"))


def explain(err: BaseException, overrides: Sequence[str], config_dir: str | Path | None = None) -> str:
    """The one-line message for Hydra's error `err` about `overrides`."""
    with hydra_app(config_dir) as hydra:
        return _Explainer(ConfigTree(hydra, overrides), overrides).message(err)


class ConfigTree:
    """The groups, options and keys a command line can name, read from Hydra's config loader."""

    def __init__(self, hydra: Hydra, overrides: Sequence[str]):
        self.hydra = hydra
        self.overrides = overrides

    @cached_property
    def groups(self) -> list[str]:
        """Every config group, nested ones as `hydra/launcher`."""
        found: list[str] = []

        def walk(parent: str) -> None:
            for name in self.hydra.config_loader.list_groups(parent):
                full = f"{parent}/{name}" if parent else name
                found.append(full)
                walk(full)

        walk("")
        return found

    def options(self, group: str) -> list[str]:
        """The options of a config group (its NAME.yaml files)."""
        return list(self.hydra.config_loader.get_group_options(group))

    @cached_property
    def config(self) -> DictConfig:
        """The config composed with the command's group choices only (those that compose), Hydra's node included."""
        chosen = [str(o.input_line) for o in _parsed(self.overrides) if o.key_or_group in self.groups
                  and not o.is_sweep_override()]
        for attempt in (chosen, []):
            try:
                return self.hydra.compose_config("config", attempt, run_mode=RunMode.RUN, with_log_configuration=False)
            except Exception:  # a bad choice among them: the defaults alone
                continue
        return OmegaConf.create()

    @cached_property
    def plain(self) -> dict:
        """`config` as plain data, unresolved: walking it runs no resolver (unique_dir makes folders)."""
        plain: Any = OmegaConf.to_container(self.config, resolve=False)
        return plain


def _parsed(overrides: Sequence[str]) -> list[Override]:
    parsed = []
    for line in overrides:
        try:
            parsed.extend(OverridesParser.create().parse_overrides([line]))
        except Exception:  # said by the error being explained
            continue
    return parsed


class _Explainer:
    """One error, said in one line: dispatches on Hydra's message."""

    def __init__(self, tree: ConfigTree, overrides: Sequence[str]):
        self.tree, self.overrides = tree, overrides

    def message(self, err: BaseException) -> str:
        text = str(err).strip()
        if isinstance(err, OverrideParseException):
            return self._unparsable(err)
        if isinstance(err, MissingConfigException):
            return self._missing(err)
        if isinstance(err, SearchPathException):
            return re.sub(r"Additional config directory '(.*)' not found",
                          r"--config-dir \1: no such directory", _first(text))
        if match := re.match(r"Ambiguous value for argument '([^=']*)=(.*)'", text):
            return self._several(*match.groups())
        if match := re.match(r"Could not override '([^']*)'", text):
            return self.message_for_key(match.group(1))
        if match := re.match(r"Could not delete from config\. '([^']*)' does not exist", text):
            return self._unknown(match.group(1), f"~{match.group(1)}")
        if match := re.match(r"Could not append to config\. An item is already at '([^']*)'", text):
            key = match.group(1)
            return f"{self._line_of(key)}: {key} is in the config already; set it with {key}={self._value_of(key)}"
        if match := re.match(r"Multiple values for ([^.]*)\.", text):
            group = match.group(1)
            return (f"{self._line_of(group)}: {group} is a config group of the defaults already; "
                    f"choose its option with {group}={self._value_of(group)} (no +)")
        if match := re.match(r"Error merging override (.*)", text):
            return self._refused_value(match.group(1), err.__cause__)
        if text.startswith("Config group override must be"):
            return self._null_group()
        return "; ".join(_first(str(e)) for e in (err, err.__cause__) if e is not None and str(e).strip())

    def message_for_key(self, key: str) -> str:
        """The message for an override of `key`, a key (or group) that is not in the config."""
        return self._unknown(key, self._line_of(key))

    # ---- the cases ---------------------------------------------------------------------------
    def _unparsable(self, err: OverrideParseException) -> str:
        line = err.override
        if "=" not in line and not line.startswith("~"):
            return f"{line}: an override needs a value: {line}=VALUE (or ~{line} to delete the key)"
        reason = _first(err.message) if not err.message.startswith("Error parsing") else err.message.splitlines()[1]
        return (f"{line}: not an override Hydra can read ({reason}); quote a value holding brackets, braces, "
                f"commas, quotes or spaces for the shell, e.g. 'key=[a,b]' (grammar: {GRAMMAR})")

    def _missing(self, err: MissingConfigException) -> str:
        wanted = err.missing_cfg_file or ""
        if match := re.match(r"Cannot find primary config '([^']*)'", str(err)):
            return f"--config-name {match.group(1)}: no such config in conf/ (or --config-dir); regrun's is config"
        group, _, option = wanted.rpartition("/")
        options = list(err.options) if err.options else self.tree.options(group)
        near = get_close_matches(option, options, n=1)
        given = self._line_of(group, option) if self._override(group, option) else f"{group}={option}"
        fixed = re.sub(rf"(?<=[=,\[]){re.escape(option)}(?=$|[,\]])", near[0], given) if near and option else ""
        chosen = re.split(r"[=,\[\]]", given)[1:]  # a close name chosen already is no fix
        hint = f"did you mean {fixed}? " if fixed and near[0] not in chosen else ""
        what = "no option given" if not option else f"no option {option!r} in group {group}"
        return f"{given}: {what}; {hint}allowed: {choices(options)} ({group}/NAME.yaml in conf/ or --config-dir)"

    def _several(self, key: str, value: str) -> str:
        return (f"{key}={value}: several values: to sweep over them, add -m (regrun -m {key}={value}); "
                f"for a list, write '{key}=[{value}]'")

    def _unknown(self, key: str, line: str) -> str:
        """A key (or group) that is not in the config: the close name, or `+` where regrun takes it."""
        value = None if line.startswith("~") else line.partition("=")[2]
        if "/" in key or (key in self.tree.groups and "." not in key):
            return self._unknown_group(key, line)
        parts = key.split(".")
        node: Any = self.tree.plain
        i = 0
        while i < len(parts) and isinstance(node, dict) and parts[i] in node:
            node, i = node[parts[i]], i + 1
        if i == len(parts):  # every part is there: Hydra refused it for another reason
            return f"{line}: {key} cannot be set this way"
        parent, rest = ".".join(parts[:i]), parts[i + 1:]
        if not isinstance(node, dict):
            return f"{line}: {parent} is a value ({node!r}), not a mapping of keys"
        candidates = [str(k) for k in node if not (not parent and k == "hydra")]
        if not parent:
            candidates += [g for g in self.tree.groups if "/" not in g and g not in candidates]
        if value is not None and parent != "hydra" and not parent.startswith("hydra.") and self._regrun_takes(key):
            return f"{line}: {parent or 'the config'} has no key {parts[i]!r} yet; to add it, write +{key}={value}"
        near = get_close_matches(parts[i], candidates, n=1)
        where = parent or "the config"
        if near:
            fixed = ".".join([*parts[:i], near[0], *rest])
            return f"{line}: {where} has no key {parts[i]!r}; did you mean {'~' if value is None else ''}{fixed}" \
                   f"{'' if value is None else '=' + value}?"
        return f"{line}: {where} has no key {parts[i]!r}; allowed: {choices(candidates)}"

    def _unknown_group(self, group: str, line: str) -> str:
        near = get_close_matches(group, self.tree.groups, n=1)
        value = line.partition("=")[2]
        hint = f"did you mean {near[0]}={value}? " if near else ""
        return f"{line}: no config group {group!r}; {hint}allowed: {choices(self.tree.groups)}"

    def _refused_value(self, line: str, cause: BaseException | None) -> str:
        if isinstance(cause, ValidationError):
            reason = _first(str(cause))
            if match := re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", reason):
                value, _, wanted = match.groups()
                reason = f"must be {TYPE_WORDS.get(wanted, wanted)}, got {value!r}"
            elif match := re.match(r"Value '(.*)' is not a valid bool", reason):
                reason = f"must be true or false, got {match.group(1)!r}"
            schema = getattr(cause, "object_type_str", None)
            return f"{line}: {reason}" + (f" (Hydra's schema {schema})" if schema and schema != "dict" else "")
        return f"{line}: {_first(str(cause)) if cause is not None else 'refused'}"

    def _null_group(self) -> str:
        for o in _parsed(self.overrides):
            if o.key_or_group in self.tree.groups and o.value() is None:
                return (f"{o.input_line}: a config group takes an option name (or a list of them), not null; "
                        f"allowed: {choices(self.tree.options(o.key_or_group))}")
        return "a config group takes an option name (or a list of them), not null"

    # ---- the command line's own words ----------------------------------------------------------
    def _override(self, key: str, holding: str = "") -> Override | None:
        """The command line's last override of `key` (Hydra's choice), or the last one holding `holding`."""
        found = [o for o in _parsed(self.overrides) if o.key_or_group == key
                 or (o.package and f"{o.key_or_group}@{o.package}" == key)]
        return next((o for o in reversed(found) if holding in str(o.input_line)), None)

    def _line_of(self, key: str, holding: str = "") -> str:
        found = self._override(key, holding)
        return str(found.input_line) if found is not None else key

    def _value_of(self, key: str) -> str:  # as the command line spells it
        found = self._override(key)
        return str(found.input_line).partition("=")[2] if found is not None else "VALUE"

    def _regrun_takes(self, key: str) -> bool:
        """Whether regrun's settings check takes `key` as a new key with the command line's
        value (an optimizer option its builder takes, a new optimizer group, a new reg target)."""
        from regrun.jobs.settings import read_settings  # torch: only to explain an error

        found = self._override(key)
        if found is None:
            return False
        task = self.tree.config.copy()
        with open_dict(task):
            task.pop("hydra", None)
        try:
            value = next(iter(found.sweep_iterator())) if found.is_sweep_override() else found.value()
            OmegaConf.update(task, key, value, force_add=True)
            plain: Any = OmegaConf.to_container(task, resolve=True)
            read_settings(plain)
        except Exception:  # refused by regrun, or not a value a sweep can give
            return False
        return True


def _first(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def check_sweep_choices(overrides: Sequence[str], config_dir: str | Path | None = None) -> None:
    """Refuse a sweep over a config group with an option that does not exist (`-m
    model=mlp,mpl`), or over a key that is not in the config (`-m trainer.epoch=1,2`), before
    its first job runs: Hydra finds them only as it starts that job."""
    changes = [o for o in _parsed(overrides) if o.type == OverrideType.CHANGE]
    sweeps = [o for o in changes if o.is_sweep_override()]
    if not sweeps:
        return
    with hydra_app(config_dir) as hydra:
        tree = ConfigTree(hydra, overrides)
        explainer = _Explainer(tree, overrides)
        # A group's missing option first, swept or not: the keys under it are missing because of it.
        for change in changes:
            if change.key_or_group in tree.groups and (not change.is_sweep_override()
                                                       or isinstance(change.value(), ChoiceSweep)):
                _check_options(change, tree, explainer)
        for sweep in sweeps:
            if sweep.key_or_group not in tree.groups and not _has_key(tree.plain, sweep.key_or_group):
                raise RegrunError(explainer.message_for_key(sweep.key_or_group))


def _check_options(override: Override, tree: ConfigTree, explainer: "_Explainer") -> None:
    options = tree.options(override.key_or_group)
    for value in override.sweep_iterator() if override.is_sweep_override() else [override.value()]:
        for name in value if isinstance(value, list) else [value]:
            if name not in options:
                raise RegrunError(explainer.message(MissingConfigException("", f"{override.key_or_group}/{name}", options)))


def _has_key(tree: dict, key: str) -> bool:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
