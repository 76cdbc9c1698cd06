"""The ``privacy`` block of a pipeline spec: which columns are personal (dropped or hashed on
load), which are sensitive (trained on, never shown), and how long data is kept.

The policy itself is ``tasks.data.privacy.PrivacyPolicy``; here the spec checks it against the
rest of the spec, and hands its sensitive columns to the drift and gate blocks, the parts
that show values. Example::

    privacy:
      pii: {email: drop, customer_id: hash}   # hash: HMAC-SHA256 keyed by RETRAIN_PII_KEY
      sensitive: [annual_income]
      retention_days: 90
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tasks.data.privacy import PrivacyPolicy

if TYPE_CHECKING:
    from retrain.config.settings import Settings

__all__ = ["PrivacyPolicy", "pii_key_of", "privacy_problem", "spread_sensitive"]


def pii_key_of(settings: Settings) -> str | None:
    """The key of hashed PII columns (``RETRAIN_PII_KEY``), or None when it is not set."""
    key = settings.pii_key
    return None if key is None else key.get_secret_value()


def spread_sensitive(data: Any) -> Any:
    """Raw spec ``data`` with ``privacy.sensitive`` also given to ``drift`` and ``gate`` (which
    mask those columns' values in what they show), unless they name their own."""
    if not isinstance(data, dict):
        return data
    privacy = data.get("privacy")
    sensitive = privacy.get("sensitive") if isinstance(privacy, dict) else None
    if not isinstance(sensitive, list) or not sensitive:
        return data
    filled = dict(data)
    for block in ("drift", "gate"):
        part = data.get(block)
        if part is None or isinstance(part, dict):
            filled[block] = {"sensitive": list(sensitive), **(part or {})}
    return filled


def privacy_problem(
    policy: PrivacyPolicy,
    *,
    target: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> str | None:
    """The first way ``policy`` contradicts the rest of the spec, as a message starting with
    the field it is about; None when it fits."""
    for column, rule in policy.pii.items():
        if column == target:
            return f"privacy.pii: {column!r} is the target; a model cannot learn a removed column"
        if rule == "drop" and column in (*numeric, *categorical):
            return (
                f"privacy.pii: {column!r} is dropped on load, so it cannot be a feature; "
                "remove it from features or hash it and list it under features.categorical"
            )
        if rule == "hash" and column in numeric:
            return (
                f"privacy.pii: {column!r} is hashed to text on load; list it under "
                "features.categorical, not numeric"
            )
        if column in policy.sensitive:
            return f"privacy.sensitive: {column!r} is PII ({rule}); list it in one place"
    return None
