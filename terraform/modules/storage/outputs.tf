output "bucket_names" {
  description = "Lake bucket name per tier (raw, processed, curated, archive)."
  value       = { for t, b in module.lake : t => b.id }
}

output "bucket_arns" {
  description = "Lake bucket ARN per tier."
  value       = { for t, b in module.lake : t => b.arn }
}

output "access_log_bucket" {
  description = "Bucket receiving S3 server access logs of the lake."
  value       = module.access_logs.id
}

output "access_log_delivery_target" {
  description = "The access-log bucket for other buckets' access_log_target (e.g. the env's secrets backup bucket): known only once its log-delivery grant exists."
  value       = module.access_logs.log_delivery_target
}

output "replication_enabled" {
  description = "Whether the lake replicates to the DR region."
  value       = var.replication.enabled
}
