data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.apis]
}

# The Cloud Storage service agent publishes the bucket's change notifications to Pub/Sub.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    # Terraform itself calls these on a fresh project (project lookups, enabling the rest).
    "cloudresourcemanager.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudfunctions.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])

  project_number = data.google_project.this.number
  # Service agents Google creates when their API is enabled (they exist only after that).
  eventarc_agent = "serviceAccount:service-${local.project_number}@gcp-sa-eventarc.iam.gserviceaccount.com"

  bucket_location = coalesce(var.bucket_location, var.region)
  input_bucket    = coalesce(var.input_bucket_name, "${var.project_id}-${var.name_prefix}-input")
  output_bucket   = coalesce(var.output_bucket_name, "${var.project_id}-${var.name_prefix}-output")
  source_bucket   = "${var.project_id}-${var.name_prefix}-source"

  # Eventarc delivers a bucket's events only to a trigger in the bucket's own location
  # (region, dual-region or multi-region), whatever the function's region.
  trigger_region = lower(google_storage_bucket.input.location)

  # Named by content: a code change is a new object, so Terraform redeploys both functions.
  source_archive = coalesce(var.source_archive, "${path.module}/build/gtcoco-source.zip")
  source_object  = "${var.name_prefix}-${filemd5(local.source_archive)}.zip"

  runtime_member = "serviceAccount:${google_service_account.runtime.email}"
  trigger_member = "serviceAccount:${google_service_account.trigger.email}"
  build_member   = "serviceAccount:${google_service_account.build.email}"

  categories_bucket = var.categories_uri == "" ? "" : regex("^gs://([^/]+)/", var.categories_uri)[0]

  # Every variable the code reads (shared/config.py, shared/storage.py), set explicitly.
  environment = {
    INPUT_BUCKET                    = google_storage_bucket.input.name
    OUTPUT_BUCKET                   = google_storage_bucket.output.name
    GTCOCO_CATEGORIES               = var.categories_uri
    GTCOCO_RECT_AS_POLYGON          = tostring(var.conversion.rect_as_polygon)
    GTCOCO_RASTER_SEGMENTATION      = var.conversion.raster_segmentation
    GTCOCO_MAX_OBJECT_BYTES         = tostring(var.conversion.max_object_bytes)
    GTCOCO_MAX_JSON_BYTES           = tostring(var.conversion.max_json_bytes)
    GTCOCO_MAX_JSON_DEPTH           = tostring(var.conversion.max_json_depth)
    GTCOCO_MAX_BATCH_JOBS           = tostring(var.conversion.max_batch_jobs)
    GTCOCO_MAX_POINTS               = tostring(var.conversion.max_points)
    GTCOCO_MAX_MASK_PIXELS          = tostring(var.conversion.max_mask_pixels)
    GTCOCO_FETCH_MAX_BYTES          = tostring(var.conversion.fetch_max_bytes)
    GTCOCO_FETCH_TIMEOUT_S          = tostring(var.conversion.fetch_timeout_s)
    GTCOCO_FETCH_ALLOW_HOSTS        = join(",", var.conversion.fetch_allow_hosts)
    GTCOCO_FETCH_HTTPS_ONLY         = tostring(var.conversion.fetch_https_only)
    GTCOCO_MAX_EVENT_AGE_S          = tostring(var.conversion.max_event_age_s)
    GTCOCO_STORAGE_RETRY_DEADLINE_S = tostring(var.conversion.storage_retry_deadline_s)
    GTCOCO_IO_WORKERS               = tostring(var.conversion.io_workers)
    GTCOCO_READ_CHUNK_BYTES         = tostring(var.conversion.read_chunk_bytes)
    GTCOCO_MAX_LABEL_CHARS          = tostring(var.conversion.max_label_chars)
    GTCOCO_MAX_CATEGORIES           = tostring(var.conversion.max_categories)
    GTCOCO_MAX_RASTER_WORK          = tostring(var.conversion.max_raster_work)
    # Backfills: tasks call the HTTP function by its cloudfunctions.net URL, known before
    # the function exists (its run.app URL would make the function depend on itself).
    GTCOCO_TASKS_QUEUE           = google_cloud_tasks_queue.backfill.id
    GTCOCO_TASKS_URL             = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}-api"
    GTCOCO_TASKS_SERVICE_ACCOUNT = google_service_account.tasks.email
    GTCOCO_BACKFILL_MAX_TASKS    = tostring(var.backfill_queue.max_tasks_per_call)
    GTCOCO_SHARD_JOBS            = tostring(var.backfill_queue.shard_jobs)
    GTCOCO_ASSEMBLE_SHARD_JOBS   = tostring(var.backfill_queue.assemble_shard_jobs)
    GTCOCO_FANOUT_LEASE_S        = tostring(var.backfill_queue.fanout_lease_s)
    # Cloud Tasks retries an attempt still running past its deadline (at most 30 min):
    # never shorter than the function may run.
    GTCOCO_TASK_DEADLINE_S = tostring(min(1800, var.http_function.timeout_seconds))
    # A lease must outlive any run holding it, or a slow writer is taken over mid-write.
    GTCOCO_LOCK_LEASE_S = tostring(max(var.conversion.lock_lease_s,
    var.trigger_function.timeout_seconds + 60, var.http_function.timeout_seconds + 60))
  }
}

# --- APIs ---------------------------------------------------------------------------------

resource "google_project_service" "apis" {
  for_each = local.apis

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs; destroying gtcoco must not disable them.
  disable_on_destroy = false
}

# --- Buckets ------------------------------------------------------------------------------

resource "google_storage_bucket" "input" {
  # checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access for storage.googleapis.com), not legacy usage-log objects.
  name                        = local.input_bucket
  project                     = var.project_id
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # Exports are the source of truth: an overwrite or delete stays recoverable.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "output" {
  # checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access for storage.googleapis.com), not legacy usage-log objects.
  # checkov:skip=CKV_GCP_78:Outputs are derived data, regenerated from the versioned input bucket; versioning would keep every rewrite.
  name                        = local.output_bucket
  project                     = var.project_id
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  dynamic "lifecycle_rule" {
    for_each = var.output_retention_days > 0 ? [var.output_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]

  lifecycle {
    precondition {
      condition     = local.input_bucket != local.output_bucket
      error_message = "The output bucket must differ from the input bucket: outputs would trigger conversions."
    }
  }
}

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62:Holds only build archives; access is audited with Cloud Audit Logs.
  # checkov:skip=CKV_GCP_78:Archives are named by content hash and rebuilt from git; versioning adds nothing.
  name                        = local.source_bucket
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  # No age-based lifecycle rule: the live archive is as old as the last code change, and a
  # rule deleting objects older than N days deletes it too (drift: the next apply uploads it
  # again while the functions point at a missing object). Archives are small and named by
  # content; remove old ones with `gcloud storage rm` when you no longer need to roll back.

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  name   = local.source_object
  bucket = google_storage_bucket.source.name
  source = local.source_archive
}

# --- Service accounts ---------------------------------------------------------------------

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-runtime"
  display_name = "gtcoco functions at run time"
  description  = "Reads the input bucket, writes the output bucket. Nothing else."

  # A fresh project answers 403 SERVICE_DISABLED until the IAM API is on.
  depends_on = [google_project_service.apis]
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-trigger"
  display_name = "gtcoco Eventarc trigger"
  description  = "Identity Eventarc uses to deliver storage events to the trigger function."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "gtcoco function builds"
  description  = "Cloud Build identity for building the functions' images."

  depends_on = [google_project_service.apis]
}

# --- Runtime: bucket-scoped storage roles only --------------------------------------------

resource "google_storage_bucket_iam_member" "runtime_reads_input" {
  bucket = google_storage_bucket.input.name
  role   = "roles/storage.objectViewer"
  member = local.runtime_member
}

# objectUser: create, overwrite and list objects (the category registry is updated with
# generation preconditions); no IAM or bucket administration.
resource "google_storage_bucket_iam_member" "runtime_writes_output" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectUser"
  member = local.runtime_member
}

resource "google_storage_bucket_iam_member" "runtime_reads_categories" {
  count = contains(["", local.input_bucket, local.output_bucket], local.categories_bucket) ? 0 : 1

  bucket = local.categories_bucket
  role   = "roles/storage.objectViewer"
  member = local.runtime_member
}

# --- Eventarc: the storage agent publishes, the trigger account receives and invokes -------

resource "google_project_iam_member" "gcs_agent_publishes" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"

  depends_on = [time_sleep.service_agents]
}

# The Eventarc service agent is created when the API is enabled, some time after: wait
# for it (bounded) before granting it its role, so the grant does not fail on a fresh
# project; the trigger waits for the grant (provider issue reports of "Permission denied
# while using the Eventarc Service Agent" on a first apply come from this race).
resource "time_sleep" "service_agents" {
  create_duration = var.service_agent_wait

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "eventarc_agent" {
  # checkov:skip=CKV_GCP_49:Google's Eventarc agent for this project, with its own role (what enabling the API grants when it does not race); no user account gets it.
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.eventarc_agent

  depends_on = [time_sleep.service_agents]
}

# eventReceiver can only be granted on the project.
resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = local.trigger_member
}

# --- Builds: a dedicated repository and account -------------------------------------------

resource "google_artifact_registry_repository" "functions" {
  # checkov:skip=CKV_GCP_84:Images hold only the public code of this repository; Google-managed encryption is enough. Set kms_key_name here if policy requires CMEK.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Images built for the gtcoco functions."

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_writes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.build_member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

# Cloud Functions gen2 copies the archive into its own bucket, gcf-v2-sources-<project
# number>-<region>, and Cloud Build reads it from there as the build account ("Access to
# bucket gcf-v2-sources-... denied" otherwise). That bucket is created by the first deploy,
# so a bucket-level grant cannot name it: a project grant, conditioned on the name prefix,
# gives object read on those buckets alone (the provider's custom build account example
# grants project-wide object read instead).
resource "google_project_iam_member" "build_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.build_member

  condition {
    title       = "gcf-v2-sources only"
    description = "Object read on the Cloud Functions source buckets of this project."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${local.project_number}-\")"
  }
}

resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

# On a fresh project the Eventarc and Cloud Storage service agents get their roles some time
# after the APIs are enabled, and new grants take a while to reach Eventarc: creating the
# trigger at once fails. Waiting here makes the first apply succeed.
resource "time_sleep" "iam_propagation" {
  create_duration = var.iam_propagation_wait

  depends_on = [
    google_project_iam_member.gcs_agent_publishes,
    google_project_iam_member.eventarc_agent,
    google_project_iam_member.build_reads_function_sources,
    google_project_iam_member.trigger_receives_events,
    google_project_service.apis,
    google_project_iam_member.build_writes_logs,
    google_artifact_registry_repository_iam_member.build_writes_images,
    google_storage_bucket_iam_member.build_reads_source,
    google_storage_bucket_iam_member.runtime_reads_input,
    google_storage_bucket_iam_member.runtime_writes_output,
  ]
}

# --- Functions ----------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "trigger" {
  name        = "${var.name_prefix}-on-upload"
  project     = var.project_id
  location    = var.region
  description = "Converts each export finalized in the input bucket to COCO in the output bucket."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = "on_upload"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.trigger_function.memory
    available_cpu                    = var.trigger_function.cpu
    timeout_seconds                  = var.trigger_function.timeout_seconds
    max_instance_count               = var.trigger_function.max_instances
    min_instance_count               = var.trigger_function.min_instances
    max_instance_request_concurrency = var.trigger_function.concurrency
    service_account_email            = google_service_account.runtime.email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.environment
  }

  event_trigger {
    trigger_region        = local.trigger_region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.input.name
    }
  }

  depends_on = [time_sleep.iam_propagation]
}

resource "google_cloudfunctions2_function" "http" {
  # checkov:skip=CKV_GCP_124:Callers (curl, CI, notebooks) are outside any VPC; access is IAM-only: run.invoker goes to var.http_invokers alone and public members are refused. Set http_ingress to narrow it.
  name        = "${var.name_prefix}-api"
  project     = var.project_id
  location    = var.region
  description = "POST /convert (export in, COCO out) and POST /process (re-run the trigger for an object)."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = "api"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.http_function.memory
    available_cpu                    = var.http_function.cpu
    timeout_seconds                  = var.http_function.timeout_seconds
    max_instance_count               = var.http_function.max_instances
    min_instance_count               = var.http_function.min_instances
    max_instance_request_concurrency = var.http_function.concurrency
    service_account_email            = google_service_account.runtime.email
    # Reachable from outside, but every request needs an identity token of an invoker below.
    ingress_settings               = var.http_ingress
    all_traffic_on_latest_revision = true
    environment_variables          = local.environment
  }

  depends_on = [time_sleep.iam_propagation]
}

# run.invoker belongs on the Cloud Run services behind the functions: the function resource
# itself rejects it.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokes" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.trigger.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.trigger_member
}

resource "google_cloud_run_v2_service_iam_member" "http_invokers" {
  for_each = toset(var.http_invokers)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}
