# --- Observability: failed conversions and retries, as metrics, an alert and a dashboard ---
#
# The functions write one JSON line per event (shared/app/service.py): `outcome` is
# converted, failed (poison input: error.json written, never retried), partial (a batch with
# failed jobs), retry (a transient or configuration fault: the platform redelivers), with
# `error_code` naming the first error. Cloud Logging parses the lines into jsonPayload.

locals {
  gtcoco_lines = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${google_cloudfunctions2_function.trigger.name}\" OR \"${google_cloudfunctions2_function.http.name}\")",
    "jsonPayload.logger=\"gtcoco\"",
  ])
  alerting = var.notification_channel != ""
}

resource "google_logging_metric" "conversion_failures" {
  project     = var.project_id
  name        = "${var.name_prefix}/conversion_failures"
  description = "Inputs (or batch jobs) that can never convert: an error.json was written."
  filter      = "${local.gtcoco_lines} AND jsonPayload.outcome=(\"failed\" OR \"partial\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "error_code"
      value_type  = "STRING"
      description = "The first error's code (invalid_json, url_unreachable, ...)."
    }
    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "failed or partial."
    }
  }
  label_extractors = {
    error_code = "EXTRACT(jsonPayload.error_code)"
    outcome    = "EXTRACT(jsonPayload.outcome)"
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "transient_retries" {
  project     = var.project_id
  name        = "${var.name_prefix}/transient_retries"
  description = "Events the platform will deliver again (storage or fetch faults, configuration)."
  filter      = "${local.gtcoco_lines} AND jsonPayload.outcome=\"retry\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "error_code"
      value_type  = "STRING"
      description = "transient or configuration."
    }
  }
  label_extractors = {
    error_code = "EXTRACT(jsonPayload.error_code)"
  }

  depends_on = [google_project_service.apis]
}

# An alert only where there is somewhere to send it (var.notification_channel).
resource "google_monitoring_alert_policy" "conversions" {
  count = local.alerting ? 1 : 0

  project      = var.project_id
  display_name = "${var.name_prefix}: conversions failing or retrying"
  combiner     = "OR"

  conditions {
    display_name = "Failed conversions above ${var.alert_failures_per_5m} in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.conversion_failures.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_failures_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Retries above ${var.alert_retries_per_5m} in 5 minutes (a retry storm)"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.transient_retries.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_retries_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  notification_channels = [var.notification_channel]

  documentation {
    mime_type = "text/markdown"
    content   = "Failed conversions wrote `error.json` under their prefix in the output bucket (code, message, JSON pointer); retries are faults the platform redelivers. Logs: `jsonPayload.logger=\"gtcoco\" AND jsonPayload.outcome=(\"failed\" OR \"retry\")`."
  }
}

resource "google_monitoring_dashboard" "gtcoco" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${var.name_prefix}: conversions"
    gridLayout = {
      columns = 2
      widgets = [
        for metric in [google_logging_metric.conversion_failures, google_logging_metric.transient_retries] : {
          title = metric.description
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"logging.googleapis.com/user/${metric.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.error_code"]
                  }
                }
              }
            }]
          }
        }
      ]
    }
  })

  depends_on = [google_project_service.apis]
}
