output "id" {
  description = "Bucket name."
  value       = aws_s3_bucket.this.bucket
}

output "arn" {
  description = "Bucket ARN."
  value       = aws_s3_bucket.this.arn
}

output "log_delivery_target" {
  description = "Bucket name for other buckets' access_log_target. Known only once this bucket's log-delivery policy and ownership controls exist, so a logging configuration that references it waits for exactly those (and not for the lifecycle's propagation wait)."
  value       = aws_s3_bucket.this.bucket
  depends_on  = [aws_s3_bucket_policy.this, aws_s3_bucket_ownership_controls.this, aws_s3_bucket_public_access_block.this]
}
