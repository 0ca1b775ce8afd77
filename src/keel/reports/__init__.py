"""Reports: every page and document Keel writes, rendered from plain documents.

The run report (``report.{json,html}``), the model card and datasheet, the validation
page and the drift page. Pure rendering: no MLflow, no models, no training code — a
page can be rebuilt from a stored report (``keel card`` does) and imported cheaply.
"""

from keel.reports._card import (
    build_card,
    build_datasheet,
    detected_limitations,
    render_markdown,
    words,
)
from keel.reports._card import render_html as render_card_html
from keel.reports._document import ModelSummary, RunReport
from keel.reports._labels import metric_label
from keel.reports._pages import (
    COLUMNS_CSS,
    atomic_write,
    render_drift_html,
    render_html,
    render_validation_html,
    write_card,
    write_drift_report,
    write_reports,
    write_validation_report,
)

__all__ = [
    "COLUMNS_CSS",
    "ModelSummary",
    "RunReport",
    "atomic_write",
    "build_card",
    "build_datasheet",
    "detected_limitations",
    "metric_label",
    "render_card_html",
    "render_drift_html",
    "render_html",
    "render_markdown",
    "render_validation_html",
    "words",
    "write_card",
    "write_drift_report",
    "write_reports",
    "write_validation_report",
]
