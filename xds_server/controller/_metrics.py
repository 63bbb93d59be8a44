"""The controller's Prometheus metrics (process-wide, registered at import)."""

from prometheus_client import Counter

FILTER_CHANGES = Counter(
    "xds_server_filter_changes_total", "Filter changes by action and result", ["action", "result"]
)
AUTO_ROLLBACKS = Counter(
    "xds_server_filter_auto_rollbacks_total",
    "Automatic rollbacks by reason (nack, analysis, runtime_failure)", ["filter", "reason"]
)
AUTO_PROMOTIONS = Counter(
    "xds_server_filter_auto_promotions_total", "Canaries promoted by their analysis", ["filter"]
)
