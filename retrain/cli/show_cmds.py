"""``retrain models show NAME[:VERSION]``: a version's provenance in one command.

From what (data snapshots, source, spec, contract), by what (code, seed, hyperparameters,
environment), why it was promoted or not (the gate's verdict with its numbers, the release's
outcome) and what happened to it (its events, the MLflow run). ``--json`` prints the same
record (``retrain.cli.provenance``) as JSON.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from retrain.cli.app import models_app
from retrain.cli.common import open_registry, settings
from retrain.cli.digests import shorten_digests
from retrain.cli.provenance import parse_reference, provenance
from retrain.terminal import console, render_table
from tasks.reporting.cost_table import COLUMNS, cost_rows

__all__ = ["models_show"]

_NONE = "none recorded"


@models_app.command("show")
def models_show(
    reference: Annotated[
        str,
        typer.Argument(metavar="NAME[:VERSION]", help="Model, and version (default: champion)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Full digests in the events table.")] = False,
) -> None:
    """Where a model version came from and why it serves (or not): data, code, spec and
    contract digests, seed, hyperparameters, environment, gate verdict, release outcome,
    events and MLflow run."""
    name, version = parse_reference(reference)
    with open_registry() as reg:
        record = provenance(reg, settings(), name, version)
    if as_json:
        typer.echo(json.dumps(record, indent=2, default=str))
        return
    _print(record, wide=wide)


def _print(r: dict[str, Any], *, wide: bool) -> None:
    aliases = f" ({', '.join(r['aliases'])})" if r["aliases"] else ""
    _heading(f"{r['model']} v{r['version']}{aliases}: {r['status']}, registered {r['registered']}")
    _line(f"bundle: {r['bundle_digest']}")
    data = r["data"]
    _section("data", [
        f"source: {_or_none(data['source'])}"
        + (f" (from the {data['source_from']})" if data["source_from"] else ""),
        f"batch: {_snapshot(data['batch'])}",
        f"training snapshot: {_snapshot(data['training'])}",
        f"holdout snapshot (its own): {_snapshot(data['holdout'])}",
    ])  # fmt: skip
    _section("code", [
        f"digest: {_or_none(r['code']['digest'])}",
        f"git commit: {r['code']['git_commit'] or 'none (not run from a git checkout)'}",
    ])  # fmt: skip
    _section("spec", [f"digest: {_or_none(r['spec']['digest'])}"])
    _section("contract", [f"digest: {_or_none(r['contract']['digest'])}"])
    _section("seed", [_or_none(r["seed"])])
    _section("hyperparameters", [
        f"{part}: {_pairs(values)}" for part, values in r["hyperparameters"].items()
    ] or [_NONE])  # fmt: skip
    env = r["environment"]
    libraries = ", ".join(f"{k} {env[k]}" for k in env if k not in ("device", "precision"))
    _section("environment", [
        libraries, f"device: {_or_none(env['device'])}, precision: {_or_none(env['precision'])}"
    ])  # fmt: skip
    _section("gate", _gate_lines(r["gate"]))
    _section("release", _release_lines(r["release"], r["gate"]))
    run = r["run"]
    _section("run", [
        f"flow run: {_or_none(run['flow_run_id'])}; trigger: {_or_none(run['trigger'])}",
        f"mlflow run: {run['mlflow_run_id'] or 'not tracked'}"
        + (f" ({run['mlflow_url']})" if run["mlflow_url"] else ""),
    ])  # fmt: skip
    _cost(r["cost"])
    rows: list[dict[str, Any]] = r["events"] if wide else shorten_digests(r["events"])
    console.print(render_table(f"events of v{r['version']} ({len(rows)})", rows,
                               ["id", "when", "event", "why", "by"]))  # fmt: skip


def _cost(cost: dict[str, Any]) -> None:
    """The ``Cost`` table (one row per stage the run measured) and where a budget stopped it."""
    rows = cost_rows(cost["stages"])
    if rows:
        console.print(render_table("Cost", rows, COLUMNS))
    else:
        _section("cost", [_NONE])
    stopped = (cost.get("training_budget") or {}).get("stopped")
    if stopped:
        _line(f"  {stopped}")


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    if gate is None:
        return ["no gate decision recorded"]
    against = (
        f"against v{gate['champion_version']}"
        if gate["champion_version"] is not None
        else "first model, absolute rules only"
    )
    numbers = [f"candidate {_num(gate['candidate'])}"]
    if gate["champion_version"] is not None:
        numbers.append(f"champion {_num(gate['champion'])}")
    numbers.append(f"floor {_num(gate['floor'])}")
    low, high = gate["ci"]
    if gate["difference"] is not None and low is not None and high is not None:
        numbers.append(
            f"difference {gate['difference']:+.4f}, {gate['confidence']:.0%} CI "
            f"[{low:+.4f}, {high:+.4f}]"
        )
    return [
        f"verdict: {str(gate['verdict']).upper()} ({against})",
        f"{gate['metric']}: " + ", ".join(numbers),
        f"graded on: {gate['holdout_digest']} ({gate['holdout_rows']} rows)",
        *(
            f"{c['rule']}: {'ok' if c['passed'] else 'FAILED'}: {c['detail']}"
            for c in gate["checks"]
        ),
        f"model card: {_or_none(gate['card_digest'])}",
    ]


def _release_lines(release: dict[str, Any] | None, gate: dict[str, Any] | None) -> list[str]:
    if release is None:
        if gate is not None and gate["verdict"] == "fail":
            return ["not released: the gate rejected it"]
        return ["no release recorded"]
    after = release["champion_after"]
    return [
        f"{release['why']} ({release['when']})",
        f"mode: {release['mode']}; champion after: {'v' + str(after) if after else 'none'}",
        f"model card: {_or_none(release['card_digest'])}",
    ]


def _heading(text: str) -> None:
    console.print(Text(text, style="bold"), soft_wrap=True)


def _line(text: str) -> None:
    console.print(Text(text), soft_wrap=True)


def _section(title: str, lines: list[str]) -> None:
    _heading(title)
    for line in lines:
        _line(f"  {line}")


def _snapshot(snapshot: dict[str, Any] | None) -> str:
    if snapshot is None:
        return _NONE
    rows = snapshot["rows"]
    return str(snapshot["digest"]) + (f" ({rows} rows)" if rows is not None else "")


def _pairs(values: Any) -> str:
    if not isinstance(values, dict):
        return str(values)
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _or_none(value: Any) -> str:
    return _NONE if value is None or value == "" else str(value)


def _num(value: Any) -> str:
    return "none" if value is None else f"{float(value):.4f}"
