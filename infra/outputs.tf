output "input_bucket" {
  description = "Upload GT Studio exports here."
  value       = google_storage_bucket.input.name
}

output "output_bucket" {
  description = "COCO datasets, masks, reports and errors land here."
  value       = google_storage_bucket.output.name
}

output "trigger_function" {
  description = "Name of the storage-triggered function."
  value       = google_cloudfunctions2_function.trigger.name
}

output "trigger_region" {
  description = "Region of the Eventarc trigger, derived from the input bucket's location."
  value       = local.trigger_region
}

output "http_function_url" {
  description = "URL of the HTTP function; call it with an identity token of an http_invokers member."
  value       = google_cloudfunctions2_function.http.service_config[0].uri
}

output "runtime_service_account" {
  description = "Identity the functions run as."
  value       = google_service_account.runtime.email
}

output "trigger_service_account" {
  description = "Identity Eventarc delivers events with."
  value       = google_service_account.trigger.email
}

output "build_service_account" {
  description = "Identity Cloud Build builds the functions with."
  value       = google_service_account.build.email
}

output "source_object" {
  description = "Deploy archive in the source bucket, named by its MD5."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}
