"""A first pipeline spec written from a data profile: commented YAML the user then edits.

``retrain pipelines init`` profiles a sample (``tasks.data.profiling``) and writes two files
side by side: ``<stem>.yaml`` (this module's text) and ``<stem>.expectations.json`` (the
starter suite), which the spec names by relative path. Every choice the profile made is a
comment next to it, and every column left out is listed with the reason, so the edit that
follows is a matter of moving names between lists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ConfigError
from retrain.config.spec_yaml import MODEL_NAME_PATTERN
from tasks.data.profiling import ColumnProfile, DataProfile

__all__ = ["InitPaths", "init_paths", "model_name_from", "render_spec"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


@dataclass(frozen=True)
class InitPaths:
    """Where ``pipelines init`` writes: the spec and, next to it, its suite."""

    spec: Path
    suite: Path

    @property
    def suite_reference(self) -> str:
        """The suite as the spec names it: relative to the spec's folder."""
        return self.suite.name


def init_paths(output: Path) -> InitPaths:
    """The spec at ``output`` (``.yaml`` added if it has no suffix) and its suite beside it."""
    spec = output if output.suffix in (".yaml", ".yml") else output.with_name(output.name + ".yaml")
    return InitPaths(spec, spec.with_name(f"{spec.stem}.expectations.json"))


def model_name_from(text: str) -> str:
    """A valid model name made from ``text`` (a file stem): lowercase, dashes for the rest."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if name and not name[0].isalpha():
        name = f"m-{name}"
    name = name[:48].rstrip("-")
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ConfigError(
            f"cannot make a model name from {text!r}; pass --name (2-48 lowercase letters, "
            "digits and dashes, starting with a letter)"
        )
    return name


def render_spec(profile: DataProfile, *, name: str, source: str, paths: InitPaths) -> str:
    """The spec's YAML text, with a comment for each choice the profile made."""
    lines = [
        f"# Pipeline {name}: written by `retrain pipelines init` from {profile.rows} rows of",
        f"# {source}. Edit it (features, gate, schedule), then:",
        f"#   retrain pipelines register {paths.spec.name}",
        f"name: {_scalar(name)}",
        f"description: {_scalar(f'{profile.task} model of {profile.target}')}",
        "",
        "dataset:",
        f"  source: {_scalar(source)}",
        f"  contract: {_scalar(paths.suite_reference)}   # GX suite next to this file; edit it",
        "  holdout_fraction: 0.2   # share of rows the gate judges models on"
        + _holdout_note(profile),
        "",
        f"target: {_scalar(profile.target)}",
        f"task: {profile.task}   # {profile.task_note}",
        "",
        "features:",
        *_feature_lines(profile, "numeric"),
        *_feature_lines(profile, "categorical"),
        *_skipped_lines(profile),
        "",
        "training:",
        "  max_epochs: 20",
        "  batch_size: auto   # 1024 on CPU; on a GPU it grows with the data",
        "  seed: 0",
        "",
        "gate:",
        *_gate_lines(profile),
        "",
        "schedule:",
        '  retrain_cron: "0 3 * * 1"   # Mondays 03:00; null turns it off',
        '  monitor_cron: "0 * * * *"   # hourly drift check; null turns it off',
        "  timezone: UTC",
        "",
        "triggers:",
        "  drift: true                # a drift event or alert starts a retrain...",
        "  cooldown_minutes: 60       # ...at most once an hour",
    ]
    return "\n".join(lines) + "\n"


def _holdout_note(profile: DataProfile) -> str:
    if profile.role("time"):
        return " (the latest, by event_time)"
    return " (drawn at random: no event_time column)"


def _feature_lines(profile: DataProfile, role: str) -> list[str]:
    columns = profile.role(role)
    if not columns:
        return [f"  {role}: []"]
    return [f"  {role}:", *(f"    - {_scalar(c.name)}   # {_describe(c)}" for c in columns)]


def _describe(column: ColumnProfile) -> str:
    empty = f", {column.null_fraction:.0%} empty" if column.null_fraction > 0 else ""
    return f"{column.note}{empty}"


def _skipped_lines(profile: DataProfile) -> list[str]:
    skipped = profile.role("skipped")
    if not skipped:
        return []
    return [
        "  # left out (move a name into a list above to use it):",
        *(f"  #   {c.name}: {c.note}" for c in skipped),
    ]


def _gate_lines(profile: DataProfile) -> list[str]:
    if profile.task == "binary":
        return [
            "  metric: roc_auc",
            "  floor: 0.6               # a first model must reach this AUC on the holdout",
            "  max_regression: 0.01     # a later one may lose at most this much to the champion",
        ]
    return [
        "  metric: rmse",
        "  # floor: 1.0               # the worst RMSE a first model may have (in target units)",
        "  max_regression: 0.01     # a later one may lose at most this much to the champion",
    ]


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when that reads back as the same string, else quoted."""
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
