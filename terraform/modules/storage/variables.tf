variable "bucket_prefix" {
  description = "Prefix of every bucket name (globally unique in AWS, so include account or org), e.g. fms-prod-123456789012-apne2."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,40}[a-z0-9]$", var.bucket_prefix))
    error_message = "bucket_prefix must be 4-42 lowercase letters, digits or dashes (S3 naming rules), not starting or ending with a dash."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS on every bucket."
  type        = string
}

variable "transition_to_ia_days" {
  description = "Days after which objects move to Standard-IA."
  type        = number
  default     = 30
  validation {
    condition     = var.transition_to_ia_days >= 30
    error_message = "S3 allows Standard-IA transitions only after at least 30 days."
  }
}

variable "transition_to_glacier_days" {
  description = "Days after which objects move to Glacier Flexible Retrieval."
  type        = number
  default     = 365
  validation {
    condition     = var.transition_to_glacier_days >= var.transition_to_ia_days + 30
    error_message = "transition_to_glacier_days must be at least 30 days after transition_to_ia_days."
  }
}

variable "expiration_days" {
  description = "Days after which raw, processed and curated objects expire (the seeds keep 3 years). null keeps them forever. The archive tier never expires."
  type        = number
  default     = 1096
  validation {
    condition     = var.expiration_days == null ? true : var.expiration_days > var.transition_to_glacier_days
    error_message = "expiration_days must be later than transition_to_glacier_days (or null)."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets. Only for labs and tests."
  type        = bool
  default     = false
}

variable "replication" {
  description = "Cross-region replication of every lake bucket to the DR region's buckets of the same tier."
  type = object({
    enabled                 = bool
    destination_bucket_arns = optional(map(string), {})
    destination_kms_key_arn = optional(string)
  })
  default = { enabled = false }
  validation {
    condition = !var.replication.enabled || (
      alltrue([for t in ["raw", "processed", "curated", "archive"] : contains(keys(var.replication.destination_bucket_arns), t)])
      && var.replication.destination_kms_key_arn != null
    )
    error_message = "With replication enabled, give destination_bucket_arns for raw, processed, curated and archive and the DR region's destination_kms_key_arn (outputs lake_bucket_arns and kms_key_arn of envs/dr)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
