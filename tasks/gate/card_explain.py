"""The model card's "Feature attributions" section, its verdict notes, an SVG bar chart and
the Prefect artifacts.

The section is plain markdown (Prefect markdown artifacts and any markdown viewer render it):
a table ranked by the candidate's permutation importance with a bar column of unicode blocks
scaled to the largest importance share, so the card needs no image. The same shares, the
champion's beside the candidate's, are also stored as an SVG chart in the registry
(``attributions_chart`` artifact) and linked from the Prefect UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from tasks.reporting.artifacts import blob_link, publish_link, publish_table

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.gate.explain import Attributions, FeatureAttribution

__all__ = [
    "attribution_notes",
    "attributions_section",
    "attributions_svg",
    "publish_attributions",
    "share_bar",
]

_BAR_WIDTH = 16
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def attribution_notes(attributions: Attributions | None) -> list[str]:
    """Lines for the card's verdict area: one per flagged feature, none otherwise."""
    if attributions is None or not attributions.notes:
        return []
    return ["", *(f"**Attribution shift:** {note}" for note in attributions.notes)]


def attributions_section(attributions: Attributions | None) -> list[str]:
    """The "Feature attributions" section; nothing when attributions were not computed."""
    if attributions is None:
        return []
    a = attributions
    top = max((f.share or 0.0 for f in a.features), default=0.0)
    compared = any(f.champion_share is not None for f in a.features)
    head = "| feature | importance share | candidate | champion | change | mean \\|IG\\| | flag |"
    return [
        "",
        "## Feature attributions",
        "",
        f"Permutation importance: how much {a.metric} worsens when the feature's column is "
        f"shuffled ({a.rows} holdout rows, {a.repeats} shuffles each, mean ± std; positive: "
        "the model needs the feature). Share: the feature's part of all positive importance; "
        "change: the candidate's share over the champion's. Mean |IG|: mean absolute "
        f"integrated-gradients attribution on {a.ig_rows} rows against a "
        f"{a.background_rows}-row background, in {a.units} units (candidate / champion).",
        "",
        head,
        "|---|---|---|---|---|---|---|",
        *(_row(f, top, compared) for f in a.features),
    ]


def _row(f: FeatureAttribution, top: float, compared: bool) -> str:
    share = "-" if f.share is None else f"`{share_bar(f.share, top)}` {f.share:.1%}"
    candidate = _importance(f.importance, f.importance_std)
    champion = _importance(f.champion_importance, f.champion_importance_std) if compared else "-"
    change = "-" if f.change is None else f"{f.change:.2f}x"
    ig = _num(f.mean_abs_ig) + (f" / {_num(f.champion_mean_abs_ig)}" if compared else "")
    flag = f"**{f.flag}**" if f.flag else ""
    return f"| {f.feature} | {share} | {candidate} | {champion} | {change} | {ig} | {flag} |"


def share_bar(share: float, top: float, width: int = _BAR_WIDTH) -> str:
    """A bar of ``width`` characters filled in eighths in proportion to ``share / top``."""
    eighths = 0 if top <= 0 else round(max(0.0, min(share / top, 1.0)) * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part else "")
    return bar.ljust(width)


def publish_attributions(
    registry: Registry,
    key: str,
    name: str,
    attributions: Attributions | None,
    meta: Mapping[str, Any] | None = None,
) -> str | None:
    """Store the SVG chart as artifact ``attributions_chart`` ``name`` (``meta`` added to its
    record); inside a Prefect run also publish the table (``key``) and a link to the chart
    (``key``-chart). Returns the chart's digest, None when there are no attributions."""
    if attributions is None:
        return None
    svg = attributions_svg(attributions).encode()
    digest = registry.put_bytes(svg, media_type="image/svg+xml")
    flagged = [f.feature for f in attributions.flagged]
    registry.catalog.register_artifact(
        "attributions_chart",
        name,
        digest,
        meta={**(meta or {}), "metric": attributions.metric, "flagged": flagged},
    )
    description = f"feature attributions on {attributions.metric} " + (
        f"(flagged: {', '.join(flagged)})" if flagged else "(none flagged)"
    )
    publish_table(key, attributions.table_rows(), description=description)
    link = blob_link(registry, digest, "attributions.svg")
    publish_link(key + "-chart", link, "importance shares (SVG)", description=description)
    return digest


_ROW = 20
_LABEL = 170
_BARS = 360
_TOP = 34


def attributions_svg(attributions: Attributions) -> str:
    """A horizontal bar chart of importance shares: candidate (dark) over champion (light)."""
    features = attributions.features
    compared = any(f.champion_share is not None for f in features)
    top = max((max(f.share or 0.0, f.champion_share or 0.0) for f in features), default=0.0) or 1.0
    width, height = _LABEL + _BARS + 110, _TOP + _ROW * len(features) + 10
    legend = "candidate (dark), champion (light)" if compared else "candidate"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="4" y="16" font-weight="bold">Permutation importance share on '
        f"{escape(attributions.metric)}: {legend}</text>",
    ]
    for i, f in enumerate(features):
        y = _TOP + i * _ROW
        colour = "#c0392b" if f.flag else "#222"
        parts.append(
            f'<text x="{_LABEL - 6}" y="{y + 13}" text-anchor="end" fill="{colour}">'
            f"{escape(f.feature)}</text>"
        )
        share = f.share or 0.0
        parts.append(_bar(_LABEL, y + 2, share / top, 9 if compared else 14, "#2c5d8a"))
        if compared:
            parts.append(_bar(_LABEL, y + 11, (f.champion_share or 0.0) / top, 6, "#9fb8cf"))
        label = f"{share:.1%}" + (f" {f.flag}" if f.flag else "")
        parts.append(f'<text x="{_LABEL + _BARS + 6}" y="{y + 13}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _bar(x: int, y: int, fraction: float, height: int, colour: str) -> str:
    length = round(max(0.0, min(fraction, 1.0)) * _BARS, 1)
    return f'<rect x="{x}" y="{y}" width="{length}" height="{height}" fill="{colour}"/>'


def _importance(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:+.4f}" + ("" if std is None else f" ± {std:.4f}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
