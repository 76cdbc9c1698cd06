"""Data contracts: run a Great Expectations suite over a frame and keep the verdict.

A contract is a GX 1.x suite stored as JSON (see ``tasks.data.contracts`` for where one is found:
a file the spec names, a folder on the suite search path, or the registry by digest). It runs in an
ephemeral GX context (nothing written to disk, analytics and progress bars off) over the whole
frame; there is no sampling, so every count in the result is exact. On 1M rows x 20 columns GX
itself takes well under the 2 s budget (see ``bench/data.py``); the result format is ``BASIC``
without unexpected-value lists because building those lists dominated the time on broken data.

Two things GX does not do on its own are enforced here:

- A suite naming an expectation type GX does not know is refused (``ConfigError``): GX logs the
  problem and silently drops the entry, which would let a contract check less than it says.
- An expectation about a missing column is a *failed* check that says the column is missing; GX
  reports it as an exception inside the result, which is easy to mistake for a pass.

GX's own ``expect_column_values_to_be_in_type_list`` cannot name pandas extension dtypes
(categoricals, ``str``, tz-aware datetimes), so contracts state types with
``expect_column_dtype_to_be_in``, defined below, which compares dtype *families*.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from registry.errors import ConfigError, DataValidationError
from tasks.data.contracts import find_suite_file, read_suite_file
from tasks.data.validation_result import ValidationResult, check_from_gx
from tasks.reporting.artifacts import artifact_key, publish_table

if TYPE_CHECKING:
    from registry.records import ArtifactRecord
    from registry.store import Registry

__all__ = [
    "check_suite",
    "dtype_family",
    "load_suite",
    "record_and_raise",
    "record_validation",
    "validate_and_record",
    "validate_frame",
]

_log = logging.getLogger(__name__)
# Per-value lists of unexpected values cost seconds on a badly broken million-row batch.
_RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}


def dtype_family(dtype: Any) -> str:
    """The contract-level type of a pandas dtype: integer, float, boolean, string, category,
    datetime_utc, datetime_naive or datetime_tz; anything else as its pandas name."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime_utc" if str(dtype.tz) == "UTC" else "datetime_tz"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "datetime_naive"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    return str(dtype)


def load_suite(contract: str | Path, *, folders: Sequence[Path] = ()) -> dict[str, Any]:
    """The suite for ``contract``: a path to a JSON file, or a name looked up in ``folders``
    and then among the shipped suites (``tasks.data.contracts.find_suite_file``)."""
    path = Path(contract)
    if not path.is_file():
        path = find_suite_file(str(contract), folders=folders)
    return dict(read_suite_file(path).suite)


def check_suite(suite: Mapping[str, Any]) -> int:
    """Build ``suite`` with GX as a run would; its number of expectations, or ``ConfigError``
    naming the first entry GX cannot build (an unknown type, bad arguments)."""
    return len(_build_suite(suite).expectations)


def validate_frame(
    frame: pd.DataFrame,
    contract: str | Path | Mapping[str, Any],
    *,
    raise_on_failure: bool = True,
) -> ValidationResult:
    """Run the contract's suite over all of ``frame``.

    Raises ``DataValidationError`` (with ``.result``) when any expectation fails and
    ``raise_on_failure`` is set, and ``ConfigError`` for a suite GX cannot fully load.
    """
    suite = dict(contract) if isinstance(contract, Mapping) else load_suite(contract)
    gx_suite = _build_suite(suite)
    raw = _run_gx(frame, gx_suite)
    by_key = {_key(r.expectation_config.type, r.expectation_config.kwargs): r for r in raw.results}
    columns = set(map(str, frame.columns))
    # Report in suite order: GX groups results by metric, which reads poorly.
    checks = [
        check_from_gx(by_key[_key(e.expectation_type, e.configuration.kwargs)], columns)
        for e in gx_suite.expectations
    ]
    result = ValidationResult(contract=str(suite["name"]), rows=len(frame), checks=tuple(checks))
    if raise_on_failure and not result.success:
        raise DataValidationError(result.summary(), result)
    return result


def record_validation(
    registry: Registry,
    result: ValidationResult,
    *,
    name: str,
    dataset_digest: str | None = None,
    contract_digest: str | None = None,
) -> ArtifactRecord:
    """Store ``result`` as a ``validation`` artifact and show it as a Prefect table."""
    digest = registry.put_bytes(result.to_json(), media_type="application/json")
    meta = {
        "contract": result.contract,
        "contract_digest": contract_digest,
        "success": result.success,
        "rows": result.rows,
        "failed": len(result.failures),
        "dataset_digest": dataset_digest,
    }
    record = registry.catalog.register_artifact("validation", name, digest, meta=meta)
    verdict = "passed" if result.success else "FAILED"
    publish_table(
        artifact_key("validation", name),
        result.table_rows(),
        description=f"Contract {result.contract} {verdict} on {result.rows} rows ({digest})",
    )
    return record


def validate_and_record(
    registry: Registry,
    frame: pd.DataFrame,
    contract: str | Path | Mapping[str, Any],
    *,
    name: str,
    dataset_digest: str | None = None,
    contract_digest: str | None = None,
    sensitive: Collection[str] = (),
) -> ValidationResult:
    """Validate, store the full result in the registry (pass or fail), then raise on failure;
    what was observed on ``sensitive`` columns is stored and told as ``[sensitive]``."""
    return record_and_raise(
        registry,
        validate_frame(frame, contract, raise_on_failure=False),
        name=name,
        dataset_digest=dataset_digest,
        contract_digest=contract_digest,
        sensitive=sensitive,
    )


def record_and_raise(
    registry: Registry,
    result: ValidationResult,
    *,
    name: str,
    dataset_digest: str | None = None,
    contract_digest: str | None = None,
    sensitive: Collection[str] = (),
) -> ValidationResult:
    """``result`` with ``sensitive`` columns masked, stored (pass or fail); then
    ``DataValidationError`` on failure (the streamed check shares this with a frame's)."""
    from tasks.data.privacy import mask_checks

    result = mask_checks(result, sensitive)
    record_validation(
        registry,
        result,
        name=name,
        dataset_digest=dataset_digest,
        contract_digest=contract_digest,
    )
    if not result.success:
        raise DataValidationError(result.summary(), result)
    return result


def _build_suite(suite: Mapping[str, Any]) -> Any:
    """A GX suite with exactly the suite's entries, or ``ConfigError`` naming the bad one.

    Each entry is built here rather than by ``ExpectationSuite``, which logs and drops
    entries it cannot build.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    _register_dtype_expectation()
    built = []
    for position, entry in enumerate(suite["expectations"], start=1):
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        where = f"suite {suite.get('name')}: expectation {position} ({kind})"
        try:
            get_expectation_impl(str(kind))
        except Exception as exc:  # GX raises its own ExpectationNotFoundError
            raise ConfigError(f"{where} is an unknown type; fix the suite") from exc
        try:
            config = ExpectationConfiguration(type=str(kind), kwargs=dict(entry.get("kwargs", {})))
            built.append(config.to_domain_obj())
        except Exception as exc:  # pydantic or GX errors about the arguments
            first = str(exc).replace("\n", " ")[:200]
            raise ConfigError(f"{where} has bad arguments: {first}") from exc
    gx_suite = gx.ExpectationSuite(
        name=str(suite["name"]), expectations=built, meta=dict(suite.get("meta", {}))
    )
    if len(gx_suite.expectations) != len(built):  # belt and braces: GX must not drop any
        raise ConfigError(f"suite {suite.get('name')}: GX dropped expectations; check the suite")
    return gx_suite


def _run_gx(frame: pd.DataFrame, gx_suite: Any) -> Any:
    return run_gx_batch(gx_batch_definition(), frame, gx_suite)


def gx_batch_definition() -> Any:
    """A GX batch definition over an in-memory frame, in an ephemeral context (no files, no
    analytics, no progress bars); build it once and validate many frames with it."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("frame").add_dataframe_asset("batch")
    return asset.add_batch_definition_whole_dataframe("whole")


def run_gx_batch(definition: Any, frame: pd.DataFrame, gx_suite: Any) -> Any:
    """Validate ``frame`` with ``gx_suite`` through ``definition`` (``gx_batch_definition``)."""
    batch = definition.get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(gx_suite, result_format=_RESULT_FORMAT)


def _key(kind: str, kwargs: Mapping[str, Any]) -> str:
    relevant = {k: v for k, v in kwargs.items() if k != "batch_id"}
    return kind + json.dumps(relevant, sort_keys=True, default=str)


_registered = False


def _register_dtype_expectation() -> None:
    """Define ``expect_column_dtype_to_be_in`` once (GX registers classes on definition)."""
    global _registered
    if _registered:
        return
    from great_expectations.expectations.expectation import BatchExpectation

    class ExpectColumnDtypeToBeIn(BatchExpectation):
        """The column exists and its dtype family is one of ``dtypes``."""

        column: str
        dtypes: list[str]
        metric_dependencies = ("table.column_types",)
        success_keys = ("column", "dtypes")
        args_keys = ("column", "dtypes")
        library_metadata: ClassVar[dict[str, Any]] = {"tags": ["type"], "contributors": []}

        def _validate(
            self,
            metrics: dict[str, Any],
            runtime_configuration: dict[str, Any] | None = None,
            execution_engine: Any = None,
        ) -> dict[str, Any]:
            found = [t["type"] for t in metrics["table.column_types"] if t["name"] == self.column]
            if not found:
                return {"success": False, "result": {"observed_value": None}}
            family = dtype_family(found[0])
            return {"success": family in self.dtypes, "result": {"observed_value": family}}

    _registered = True
