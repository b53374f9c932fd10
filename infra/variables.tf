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

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "gtcoco" }
}
