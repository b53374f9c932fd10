# --- Work beyond one invocation, on Cloud Tasks ----------------------------------------------
#
# One queue carries three kinds of task, each naming exactly its own work:
# - POST /backfill (or `gtcoco backfill`): a task per export not yet converted at its live
#   generation, calling POST /process;
# - a batch of more than backfill_queue.shard_jobs jobs: a task per shard, POST /shard;
# - POST /assemble over more than backfill_queue.assemble_shard_jobs jobs: map tasks
#   (POST /assemble/map), then one reduce (POST /assemble/reduce).
# Every task carries an OIDC token of the task-invoker account. Least privilege: the runtime account may only enqueue on this
# queue and act as the invoker account (to mint the tasks' tokens); the invoker account
# alone may invoke the HTTP function, and can do nothing else. No task enqueues another.

resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-tasks"
  display_name = "gtcoco task invoker"
  description  = "Identity of the Cloud Tasks requests to the HTTP function; holds only run.invoker on it."

  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue" "backfill" {
  name     = "${var.name_prefix}-backfill"
  project  = var.project_id
  location = var.region

  # Each task is one export: the rate and concurrency bound the HTTP function's load, the
  # retries bound a poison task (a poison export answers 200 and is never retried).
  rate_limits {
    max_dispatches_per_second = var.backfill_queue.max_dispatches_per_second
    max_concurrent_dispatches = var.backfill_queue.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.backfill_queue.max_attempts
    min_backoff        = "10s"
    max_backoff        = "600s"
    max_doublings      = 5
    max_retry_duration = "86400s"
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue_iam_member" "runtime_enqueues" {
  project  = var.project_id
  location = google_cloud_tasks_queue.backfill.location
  name     = google_cloud_tasks_queue.backfill.name
  role     = "roles/cloudtasks.enqueuer"
  member   = local.runtime_member
}

# Creating a task with an OIDC token of the invoker account requires acting as it.
resource "google_service_account_iam_member" "runtime_acts_as_tasks" {
  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

resource "google_cloud_run_v2_service_iam_member" "tasks_invoke_http" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks.email}"
}
