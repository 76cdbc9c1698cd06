"""Prometheus recording and alerting rules for the golden signals of served models.

One rule group, ``retrain``, in three parts:

1. The limits of each pipeline spec as series (``retrain:spec_*{model="..."}``): the error
   budget (``canary.limits.max_error_rate``), the p95 latency budget
   (``canary.limits.max_p95_latency_s``, else ``gate.latency_p95_ms``, else 250 ms), the
   prediction-shift cap (``canary.limits.max_prediction_shift``, a KS distance), the online
   loss increase allowed (``canary.limits.max_online_loss_increase``) with the labels it needs
   (``min_feedback``), and the requests a window needs to judge (``canary.min_requests``). This
   is the only part that depends on the specs: the alerts compare ``on (model)``, so a model
   whose spec is not in the file raises none of them.
2. Recording rules over the model server's metrics (``serving.metrics``): what clients
   received (``retrain_client_requests_total{outcome}``, ``retrain_client_latency_seconds``),
   the KS distance between prediction histograms (canary against champion, and the champion's
   recent predictions against its baseline window), and the squared error on delayed labels.
3. Alerts: ``RetrainClientErrorRatioHigh`` (``action: rollback``, ``severity: page``: the
   receiver moves the champion back at once), ``RetrainPredictionShift`` and
   ``RetrainOnlineLossUp`` (``action: retrain``), ``RetrainLatencyP95OverBudget`` and
   ``RetrainScrapeTargetDown`` (a person's: no retrain or rollback fixes them).

``render_rules`` returns the file's text; ``retrain alerts rules`` writes or checks it
(``infra/prometheus/retrain-rules.yml`` holds the rules of the shipped specs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrain.config.specs import PipelineSpec

__all__ = ["DEFAULT_LATENCY_BUDGET_S", "RuleTiming", "render_rules", "spec_limits"]

DEFAULT_LATENCY_BUDGET_S = 0.25  # a spec with neither canary nor gate latency budget
JOBS = ("retrain-model-server", "retrain-alert-receiver")  # the scrape jobs of prometheus.yml


@dataclass(frozen=True)
class RuleTiming:
    """Windows and ``for`` durations of the alerts (PromQL durations). The defaults fit a
    15 s scrape interval; a benchmark scraping every second may shorten them."""

    error_window: str = "1m"
    error_for: str = "1m"
    latency_window: str = "5m"
    latency_for: str = "10m"
    shift_window: str = "15m"
    baseline_window: str = "1d"
    baseline_offset: str = "1h"
    shift_for: str = "30m"
    loss_window: str = "1h"
    loss_for: str = "30m"
    down_for: str = "1m"


def spec_limits(spec: PipelineSpec) -> dict[str, float]:
    """The spec's limits the alerts compare against, by series name."""
    limits = spec.canary.limits
    latency = limits.max_p95_latency_s
    if latency is None and spec.gate.latency_p95_ms is not None:
        latency = spec.gate.latency_p95_ms / 1000.0
    return {
        "retrain:spec_max_error_ratio": limits.max_error_rate,
        "retrain:spec_latency_budget_seconds": latency or DEFAULT_LATENCY_BUDGET_S,
        "retrain:spec_max_prediction_shift": limits.max_prediction_shift,
        "retrain:spec_max_online_loss_increase": limits.max_online_loss_increase,
        "retrain:spec_min_feedback": float(limits.min_feedback),
        "retrain:spec_min_requests": float(spec.canary.min_requests),
    }


def render_rules(specs: Sequence[PipelineSpec], timing: RuleTiming | None = None) -> str:
    """The rule file for ``specs`` (sorted by name), as YAML text ending in a newline."""
    t = timing or RuleTiming()
    lines = [
        "# Prometheus rules for the golden signals of served models (Prometheus 2.x).",
        "# Per-model limits come from the pipeline specs; rewrite this file with",
        "#   retrain alerts rules --out infra/prometheus/retrain-rules.yml",
        "# after changing a spec (`retrain alerts rules --check FILE` says when it is stale).",
        "groups:",
        "  - name: retrain",
        "    rules:",
    ]
    for spec in sorted(specs, key=lambda s: s.name):
        lines.append(f"      # the limits of {spec.name}'s spec")
        for name, value in spec_limits(spec).items():
            lines += [
                f"      - record: {name}",
                f"        expr: vector({value:g})",
                "        labels:",
                f"          model: {spec.name}",
            ]
    for name, expr in _recordings(t):
        lines += [f"      - record: {name}", f"        expr: {_quoted(expr)}"]
    for alert in _alerts(t):
        lines += alert.lines()
    return "\n".join(lines) + "\n"


def _recordings(t: RuleTiming) -> list[tuple[str, str]]:
    clients = "retrain_client_requests_total"
    errors = f'{clients}{{outcome="error"}}'
    fallbacks = f'{clients}{{outcome="fallback"}}'
    w, sw, lw = t.error_window, t.shift_window, t.loss_window
    base = f"[{t.baseline_window}] offset {t.baseline_offset}"
    pred = "retrain_prediction_value"
    cdf = f"model_variant_le:{pred}:cdf_{sw}"
    cdf_base = f"model_variant_le:{pred}:cdf_baseline"
    cpu_s = "retrain_predict_cpu_seconds_total"
    mse = "model_variant:retrain_feedback_squared_error:mean"
    return [
        (f"model:{clients}:increase{w}", f"sum by (model) (increase({clients}[{w}]))"),
        (f"model:retrain_client_errors:ratio_rate{w}", _ratio(errors, clients, w, "model")),
        (f"model:retrain_client_fallbacks:ratio_rate{w}", _ratio(fallbacks, clients, w, "model")),
        (
            f"model:retrain_client_latency_seconds:p95_{t.latency_window}",
            "histogram_quantile(0.95, sum by (model, le) "
            f"(rate(retrain_client_latency_seconds_bucket[{t.latency_window}])))",
        ),
        (
            f"model_variant:retrain_predict_latency_seconds:p95_{t.latency_window}",
            "histogram_quantile(0.95, sum by (model, variant, le) "
            f"(rate(retrain_predict_latency_seconds_bucket[{t.latency_window}])))",
        ),
        (cdf, _cdf(pred, f"[{sw}]", "")),
        (cdf_base, _cdf(pred, base, 'variant="champion"')),
        (
            f"model:{pred}:ks_canary_vs_champion_{sw}",
            f'max by (model) (abs({cdf}{{variant="canary"}} '
            f'- ignoring (variant) {cdf}{{variant="champion"}}))',
        ),
        (
            f"model:{pred}:ks_vs_baseline",
            f'max by (model) (abs({cdf}{{variant="champion"}} - {cdf_base}))',
        ),
        (
            f"{mse}_{lw}",
            _ratio("retrain_feedback_squared_error_total", "retrain_feedback_labels_total", lw),
        ),
        (
            f"{mse}_baseline",
            _ratio("retrain_feedback_squared_error_total", "retrain_feedback_labels_total", base),
        ),
        (
            f"model_variant:retrain_feedback_accuracy:ratio_{lw}",
            _ratio("retrain_feedback_correct_total", "retrain_feedback_labels_total", lw),
        ),
        (
            f"model_variant:retrain_feedback_labels:increase_{lw}",
            f"sum by (model, variant) (increase(retrain_feedback_labels_total[{lw}]))",
        ),
        (  # serving cost next to latency: CPU ms per 1000 predictions (serving.cpu_cost)
            f"model_version:retrain_predict_cpu_ms_per_1k:rate{t.latency_window}",
            "1e6 * " + _ratio(cpu_s, f"{pred}_count", t.latency_window, "model, version"),
        ),
    ]


def _ratio(num: str, den: str, window: str, by: str = "model, variant") -> str:
    """``sum(rate(num)) / sum(rate(den))`` by ``by``; ``window`` is ``1m`` or ``[1d] offset
    1h``-like (a range with its offset)."""
    rng = window if window.startswith("[") else f"[{window}]"
    return f"sum by ({by}) (rate({num}{rng})) / sum by ({by}) (rate({den}{rng}))"


def _cdf(metric: str, rng: str, selector: str) -> str:
    """The share of predictions at or below each bucket edge over ``rng``, per variant."""
    sel = f"{{{selector}}}" if selector else ""
    return (
        f"sum by (model, variant, le) (rate({metric}_bucket{sel}{rng})) / on (model, variant) "
        f"group_left sum by (model, variant) (rate({metric}_count{sel}{rng}))"
    )


@dataclass(frozen=True)
class _Alert:
    name: str
    expr: str
    duration: str
    labels: dict[str, str]
    summary: str
    description: str

    def lines(self) -> list[str]:
        out = [
            f"      - alert: {self.name}",
            f"        expr: {_quoted(self.expr)}",
            f"        for: {self.duration}",
            "        labels:",
        ]
        out += [f"          {key}: {value}" for key, value in self.labels.items()]
        out += [
            "        annotations:",
            f"          summary: {_quoted(self.summary)}",
            f"          description: {_quoted(self.description)}",
        ]
        return out


def _alerts(t: RuleTiming) -> list[_Alert]:
    w, lw, sw = t.error_window, t.loss_window, t.shift_window
    mse = "model_variant:retrain_feedback_squared_error:mean"
    jobs = "|".join(JOBS)
    return [
        _Alert(
            "RetrainClientErrorRatioHigh",
            f"model:retrain_client_errors:ratio_rate{w} > on (model) retrain:spec_max_error_ratio"
            f" and on (model) (model:retrain_client_requests_total:increase{w}"
            " >= on (model) retrain:spec_min_requests)",
            t.error_for,
            {"severity": "page", "action": "rollback"},
            "{{ $labels.model }}: {{ $value | humanizePercentage }} of client requests fail",
            f"Over {w}, more client requests of {{{{ $labels.model }}}} got a 5xx than its spec's "
            "error budget allows: the alert receiver rolls it back to its previous champion.",
        ),
        _Alert(
            "RetrainLatencyP95OverBudget",
            f"model:retrain_client_latency_seconds:p95_{t.latency_window}"
            " > on (model) retrain:spec_latency_budget_seconds",
            t.latency_for,
            {"severity": "warning"},
            "{{ $labels.model }}: client p95 latency {{ $value | humanizeDuration }}",
            f"The p95 latency clients of {{{{ $labels.model }}}} saw over {t.latency_window} "
            "is above its spec's budget; check the server's load and the champion's size.",
        ),
        _Alert(
            "RetrainPredictionShift",
            "model:retrain_prediction_value:ks_vs_baseline > on (model) "
            "retrain:spec_max_prediction_shift",
            t.shift_for,
            {"severity": "warning", "action": "retrain"},
            '{{ $labels.model }}: predictions shifted (KS {{ $value | printf "%.2f" }})',
            f"The champion's predictions over {sw} differ from its baseline "
            f"({t.baseline_window} ending {t.baseline_offset} ago) by more than its spec "
            "allows: the inputs drifted, a retrain is started.",
        ),
        _Alert(
            "RetrainOnlineLossUp",
            f'{mse}_{lw}{{variant="champion"}} - {mse}_baseline{{variant="champion"}}'
            " > on (model) retrain:spec_max_online_loss_increase"
            f" and on (model) (model_variant:retrain_feedback_labels:increase_{lw}"
            '{variant="champion"} >= on (model) retrain:spec_min_feedback)',
            t.loss_for,
            {"severity": "warning", "action": "retrain"},
            '{{ $labels.model }}: squared error on labels up {{ $value | printf "%.3f" }}',
            f"On delayed labels of the last {lw}, the champion's squared error rose above its "
            "baseline by more than its spec allows: a retrain is started.",
        ),
        _Alert(
            "RetrainScrapeTargetDown",
            f'up{{job=~"{jobs}"}} == 0',
            t.down_for,
            {"severity": "page"},
            "{{ $labels.job }} at {{ $labels.instance }} is down",
            "Prometheus cannot scrape it: no golden-signal alert can fire for what it serves.",
        ),
    ]


def _quoted(text: str) -> str:
    """``text`` as a single-quoted YAML scalar (PromQL and templates hold ``"``, ``{`` and
    ``:``)."""
    return "'" + text.replace("'", "''") + "'"
