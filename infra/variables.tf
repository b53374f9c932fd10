variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the two functions, their build repository and (by default) the buckets."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, functions, buckets)."
  type        = string
  default     = "gtcoco"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,16}$", var.name_prefix))
    error_message = "name_prefix: 2-17 characters, lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_location" {
  description = "Location of the input and output buckets (a region such as us-central1, or a multi-region such as US). The trigger region is derived from it."
  type        = string
  default     = null
}

variable "input_bucket_name" {
  description = "Name of the bucket users upload exports to. Default: <project_id>-<name_prefix>-input."
  type        = string
  default     = null
}

variable "output_bucket_name" {
  description = "Name of the bucket the COCO datasets are written to; must differ from the input bucket. Default: <project_id>-<name_prefix>-output."
  type        = string
  default     = null
}

variable "source_archive" {
  description = "Path of the deploy archive built by `make archive` (infra/build_archive.py). Default: infra/build/gtcoco-source.zip."
  type        = string
  default     = null
}

variable "http_invokers" {
  description = "IAM members allowed to call the HTTP function, e.g. [\"user:ana@example.com\", \"group:ml@example.com\", \"serviceAccount:ci@p.iam.gserviceaccount.com\"]. Public members are refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.http_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "http_invokers: the HTTP function is IAM-only; allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "http_ingress" {
  description = "Ingress of the HTTP function. ALLOW_ALL lets callers outside Google Cloud reach it; IAM still rejects anyone not in http_invokers."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.http_ingress)
    error_message = "http_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "categories_uri" {
  description = "Optional gs:// URI of the project's class list (JSON list, COCO categories or one name per line); fixes category ids. The runtime account is given read access to its bucket."
  type        = string
  default     = ""

  validation {
    condition     = var.categories_uri == "" || can(regex("^gs://[^/]+/.+", var.categories_uri))
    error_message = "categories_uri must be empty or gs://bucket/object."
  }
}

variable "conversion" {
  description = "COCO choices and input limits, passed to both functions as GTCOCO_* variables (see the README's configuration table). Defaults match the code's."
  type = object({
    rect_as_polygon          = optional(bool, false)
    raster_segmentation      = optional(string, "auto")
    max_object_bytes         = optional(number, 536870912)
    max_json_bytes           = optional(number, 67108864)
    max_json_depth           = optional(number, 64)
    max_batch_jobs           = optional(number, 10000)
    max_points               = optional(number, 20000)
    max_mask_pixels          = optional(number, 100000000)
    fetch_max_bytes          = optional(number, 268435456)
    fetch_timeout_s          = optional(number, 30)
    fetch_allow_hosts        = optional(list(string), [])
    fetch_https_only         = optional(bool, false)
    max_event_age_s          = optional(number, 21600)
    storage_retry_deadline_s = optional(number, 60)
    max_label_chars          = optional(number, 256)
    max_categories           = optional(number, 10000)
    max_raster_work          = optional(number, 4000000)
    lock_lease_s             = optional(number, 900)
    io_workers               = optional(number, 32)
    read_chunk_bytes         = optional(number, 1048576)
  })
  default = {}

  validation {
    condition     = contains(["auto", "rle", "polygon"], var.conversion.raster_segmentation)
    error_message = "conversion.raster_segmentation must be auto, rle or polygon."
  }
}

variable "trigger_function" {
  description = "Sizing of the storage-triggered function. One request per instance: conversion is CPU-bound."
  type = object({
    memory          = optional(string, "2Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 540)
    max_instances   = optional(number, 10)
    min_instances   = optional(number, 0)
    concurrency     = optional(number, 1)
  })
  default = {}

  # Checked here, not at apply: Cloud Run refuses concurrency above 1 below one CPU, and
  # the limits of Cloud Functions gen2 (event-driven functions stop at 540 s).
  validation {
    condition     = var.trigger_function.concurrency == 1 || tonumber(var.trigger_function.cpu) >= 1
    error_message = "trigger_function.concurrency above 1 needs cpu of at least 1."
  }
  validation {
    condition     = var.trigger_function.concurrency >= 1 && var.trigger_function.concurrency <= 1000
    error_message = "trigger_function.concurrency must be between 1 and 1000."
  }
  validation {
    condition     = var.trigger_function.timeout_seconds >= 1 && var.trigger_function.timeout_seconds <= 540
    error_message = "trigger_function.timeout_seconds must be between 1 and 540."
  }
  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.trigger_function.cpu)) && tonumber(var.trigger_function.cpu) > 0 && tonumber(var.trigger_function.cpu) <= 8
    error_message = "trigger_function.cpu must be a number of CPUs up to 8, such as \"1\" or \"0.5\"."
  }
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.trigger_function.memory))
    error_message = "trigger_function.memory must be like 512Mi or 2Gi."
  }
  validation {
    condition     = var.trigger_function.max_instances >= 1 && var.trigger_function.min_instances >= 0 && var.trigger_function.min_instances <= var.trigger_function.max_instances
    error_message = "trigger_function needs 1 <= max_instances and 0 <= min_instances <= max_instances."
  }
}

variable "http_function" {
  description = "Sizing of the HTTP function."
  type = object({
    memory          = optional(string, "2Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 300)
    max_instances   = optional(number, 5)
    min_instances   = optional(number, 0)
    concurrency     = optional(number, 1)
  })
  default = {}

  # Checked here, not at apply: Cloud Run refuses concurrency above 1 below one CPU, and
  # the limits of Cloud Functions gen2 (HTTP functions stop at 3,600 s).
  validation {
    condition     = var.http_function.concurrency == 1 || tonumber(var.http_function.cpu) >= 1
    error_message = "http_function.concurrency above 1 needs cpu of at least 1."
  }
  validation {
    condition     = var.http_function.concurrency >= 1 && var.http_function.concurrency <= 1000
    error_message = "http_function.concurrency must be between 1 and 1000."
  }
  validation {
    condition     = var.http_function.timeout_seconds >= 1 && var.http_function.timeout_seconds <= 3600
    error_message = "http_function.timeout_seconds must be between 1 and 3600."
  }
  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.http_function.cpu)) && tonumber(var.http_function.cpu) > 0 && tonumber(var.http_function.cpu) <= 8
    error_message = "http_function.cpu must be a number of CPUs up to 8, such as \"1\" or \"0.5\"."
  }
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.http_function.memory))
    error_message = "http_function.memory must be like 512Mi or 2Gi."
  }
  validation {
    condition     = var.http_function.max_instances >= 1 && var.http_function.min_instances >= 0 && var.http_function.min_instances <= var.http_function.max_instances
    error_message = "http_function needs 1 <= max_instances and 0 <= min_instances <= max_instances."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted export stays recoverable in the (versioned) input bucket."
  type        = number
  default     = 30
}

variable "output_retention_days" {
  description = "Delete outputs older than this many days; 0 keeps them forever."
  type        = number
  default     = 0
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets that still hold objects."
  type        = bool
  default     = false
}

variable "iam_propagation_wait" {
  description = "Wait after the first IAM grants before creating the trigger; Eventarc rejects triggers until new grants propagate."
  type        = string
  default     = "90s"
}

variable "backfill_queue" {
  description = "The task queue of backfills, batch shards and sharded assemblies: dispatch rate and concurrency (the HTTP function's load), attempts per task, tasks one POST /backfill may enqueue, jobs per batch shard and per assembly map task, how long a fan-out holds its input (s)."
  type = object({
    max_dispatches_per_second = optional(number, 20)
    max_concurrent_dispatches = optional(number, 10)
    max_attempts              = optional(number, 10)
    max_tasks_per_call        = optional(number, 100000)
    shard_jobs                = optional(number, 2000)
    assemble_shard_jobs       = optional(number, 20000)
    fanout_lease_s            = optional(number, 21600)
  })
  default = {}

  validation {
    condition     = var.backfill_queue.max_concurrent_dispatches >= 1 && var.backfill_queue.max_dispatches_per_second > 0 && var.backfill_queue.max_attempts >= 1 && var.backfill_queue.max_tasks_per_call >= 1 && var.backfill_queue.shard_jobs >= 1 && var.backfill_queue.assemble_shard_jobs >= 1 && var.backfill_queue.fanout_lease_s >= 1
    error_message = "backfill_queue needs positive rates, at least one attempt, one task per call and one job per shard."
  }
}

variable "service_agent_wait" {
  description = "Wait after enabling the APIs before granting the Eventarc and Cloud Storage service agents their roles: Google creates the agents some time after the API is on."
  type        = string
  default     = "60s"
}

variable "notification_channel" {
  description = "A Cloud Monitoring notification channel id (projects/P/notificationChannels/N) for the alert on failed conversions and retry storms; empty: metrics and the dashboard only, no alert."
  type        = string
  default     = ""

  validation {
    condition     = var.notification_channel == "" || can(regex("^projects/[^/]+/notificationChannels/[^/]+$", var.notification_channel))
    error_message = "notification_channel must be empty or projects/PROJECT/notificationChannels/ID."
  }
}

variable "alert_failures_per_5m" {
  description = "Failed conversions (error.json written) in 5 minutes above which the alert fires."
  type        = number
  default     = 0
}

variable "alert_retries_per_5m" {
  description = "Redelivered events in 5 minutes above which the alert fires (a retry storm)."
  type        = number
  default     = 20
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "gtcoco" }
}
