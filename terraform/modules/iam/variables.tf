variable "name" {
  description = "Name prefix for roles and instance profiles."
  type        = string
}

variable "lake_bucket_arns" {
  description = "ARN of each data-lake bucket by tier: raw, processed, curated, archive."
  type        = map(string)
  validation {
    condition     = alltrue([for t in ["raw", "processed", "curated", "archive"] : contains(keys(var.lake_bucket_arns), t)])
    error_message = "lake_bucket_arns must have the keys raw, processed, curated and archive."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the lake; lake users may use it for S3 only."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
