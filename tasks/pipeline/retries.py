"""Which failures a pipeline step retries: the registry's store or database briefly out of
reach, or the network on the way to them; never a user's data, spec or code.

Every Prefect task face of a step (``tasks.pipeline_tasks``, ``tasks.release_tasks``) takes
``TRANSIENT_RETRIES``: up to three more tries, 2 s, 10 s and 30 s apart (with jitter), so a
store or database outage of up to about forty seconds costs a retrain nothing. A step whose
error says the data or the spec is wrong fails at once, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.errors import DatabaseUnavailableError, RetrainError, StoreUnavailableError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State, TaskRun

__all__ = ["RETRY_DELAYS_S", "TRANSIENT_RETRIES", "is_transient", "retry_when_transient"]

RETRY_DELAYS_S = [2.0, 10.0, 30.0]
# Error codes an S3 endpoint answers when it is busy or briefly failing, not when asked wrongly.
_S3_BUSY = frozenset(
    {"SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable", "503"}
)


def is_transient(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from) is a store, database or network
    failure that a later try may not meet; any other error of the platform's is final."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if _transient_itself(error):
            return True
        error = error.__cause__
    return False


def _transient_itself(error: BaseException) -> bool:
    if isinstance(error, (StoreUnavailableError, DatabaseUnavailableError)):
        return True
    if isinstance(error, RetrainError):
        return False  # the platform's own verdict on the input: follow its cause, if any
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return _network_library_error(error)


def _network_library_error(error: BaseException) -> bool:
    """httpx transport errors, botocore connection errors and busy S3 answers, SQLAlchemy's
    lost connections (the registry turns the rest of a database's failures into
    ``DatabaseUnavailableError``)."""
    import httpx
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
    from sqlalchemy.exc import DBAPIError, DisconnectionError

    network = (
        httpx.TransportError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        DisconnectionError,
    )
    if isinstance(error, network):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)  # the server dropped the connection
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _S3_BUSY or status >= 500
    return False


def retry_when_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed task run only on a transient error."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            result = state.result(raise_on_failure=False)
        except Exception:  # an unreadable result is no evidence of a transient failure
            return False
        error = result if isinstance(result, BaseException) else None
    return is_transient(error)


TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": len(RETRY_DELAYS_S),
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": retry_when_transient,
}
"""Keyword arguments of ``prefect.task`` for a step that retries transient failures."""
