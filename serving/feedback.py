"""Which version answered which request, kept until the labels arrive (``:feedback``).

The log is bounded (answers and predictions held); labels are matched to the answer they
label and checked against it (one per prediction, within the version's label range) before
any is applied.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from registry.errors import InvalidRequestError
from serving.requests import Labels

if TYPE_CHECKING:
    from serving.stats import SeriesStats

__all__ = ["Answer", "FeedbackLog"]


class Answer:
    """What one request was answered with, kept until its labels arrive."""

    __slots__ = ("high", "low", "predictions", "series", "shadow", "shadow_predictions")

    def __init__(
        self, series: SeriesStats, predictions: Sequence[float], label_range: tuple[float, float]
    ) -> None:
        self.series = series
        # 8 bytes a prediction instead of a list of float objects (~32 bytes each).
        self.predictions = array("d", predictions)
        self.low, self.high = label_range
        # A shadow that scored the same request: its labels score the shadow too.
        self.shadow: SeriesStats | None = None
        self.shadow_predictions = array("d")


class FeedbackLog:
    """Which version answered which request id, so late labels find their series.

    Bounded twice: at most ``capacity`` answers, holding at most ``max_predictions``
    predictions all together; the oldest answers go first (their labels then count as unknown).
    """

    def __init__(self, capacity: int = 200_000, max_predictions: int = 1_000_000) -> None:
        self._capacity, self._max_predictions = capacity, max_predictions
        self._held = 0
        # Ordered: dropping the oldest is O(1); a plain dict's next(iter()) scans the slots
        # its earlier deletions left behind, tens of microseconds a request once full.
        self._entries: OrderedDict[str, Answer] = OrderedDict()

    def remember(
        self,
        request_id: str,
        series: SeriesStats,
        predictions: Sequence[float],
        label_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """Keep the answer of ``request_id`` (labels must lie in ``label_range``); the oldest
        answers go to make room. An id already held is replaced: callers check ``in`` first."""
        if len(predictions) > self._max_predictions:
            return  # larger than the whole log: its labels will count as unknown
        self.pop(request_id)
        while self._entries and (
            len(self._entries) >= self._capacity
            or self._held + len(predictions) > self._max_predictions
        ):
            _, oldest = self._entries.popitem(last=False)
            self._held -= len(oldest.predictions) + len(oldest.shadow_predictions)
        self._entries[request_id] = Answer(series, predictions, label_range)
        self._held += len(predictions)

    def shadowed(self, request_id: str, series: SeriesStats, predictions: Sequence[float]) -> None:
        """Note a shadow's predictions for the kept answer of ``request_id`` (if it is still
        kept and the shadow scored every instance), counted against the bound."""
        answer = self._entries.get(request_id)
        if answer is None or len(predictions) != len(answer.predictions):
            return
        if self._held + len(predictions) > self._max_predictions:
            return  # full: the shadow simply misses these labels
        self._held += len(predictions) - len(answer.shadow_predictions)
        answer.shadow, answer.shadow_predictions = series, array("d", predictions)

    def get(self, request_id: str) -> Answer | None:
        """The answer of ``request_id``, kept."""
        return self._entries.get(request_id)

    def pop(self, request_id: str) -> Answer | None:
        """The answer of ``request_id``, forgotten once labelled."""
        found = self._entries.pop(request_id, None)
        if found is not None:
            self._held -= len(found.predictions) + len(found.shadow_predictions)
        return found

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held(self) -> int:
        """Predictions held, all answers together."""
        return self._held

    def match(self, items: list[Labels], name: str) -> list[tuple[Labels, Answer]]:
        """Each item with the answer it labels (unknown ids, another model's, dropped); refused
        if labels do not fit that answer: one per prediction, within the version's range."""
        matched: list[tuple[Labels, Answer]] = []
        seen: set[str] = set()
        for item in items:
            answer = self.get(item.request_id)
            if answer is None or answer.series.model != name or item.request_id in seen:
                continue
            seen.add(item.request_id)
            i, count = item.index, len(answer.predictions)
            if len(item.labels) != count:
                raise InvalidRequestError(
                    f"feedback[{i}].labels has {len(item.labels)} label(s) for {count} "
                    "prediction(s); send one label per instance",
                    field="labels",
                )
            if not all(answer.low <= v <= answer.high for v in item.labels):
                raise InvalidRequestError(
                    f"feedback[{i}].labels must lie within [{answer.low:g}, {answer.high:g}] "
                    f"for model {name!r} v{answer.series.version}",
                    field="labels",
                )
            matched.append((item, answer))
        return matched
