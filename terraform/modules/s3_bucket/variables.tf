variable "name" {
  description = "Bucket name (globally unique)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.name))
    error_message = "name must follow S3 bucket naming rules: 3-63 lowercase letters, digits, dots or dashes."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS; null uses SSE-S3 (required for S3 server access-log targets)."
  type        = string
  default     = null
}

variable "access_log_target" {
  description = "Bucket and prefix receiving this bucket's server access logs; null disables logging (only for the log bucket itself)."
  type = object({
    bucket = string
    prefix = string
  })
  default = null
}

variable "accepts_access_logs" {
  description = "Grant the S3 logging service write access: this bucket is an access-log target."
  type        = bool
  default     = false
}

variable "lifecycle_transitions" {
  description = "Storage-class transitions: list of { days, storage_class }."
  type = list(object({
    days          = number
    storage_class = string
  }))
  default = []
  validation {
    condition     = alltrue([for t in var.lifecycle_transitions : contains(["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], t.storage_class)])
    error_message = "storage_class must be one of STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR, GLACIER, DEEP_ARCHIVE."
  }
}

variable "expiration_days" {
  description = "Days after which current objects expire; null keeps them."
  type        = number
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept."
  type        = number
  default     = 90
}

variable "replication" {
  description = "Cross-region replication of this bucket: IAM role, destination bucket ARN and the destination region's KMS key. null disables it."
  type = object({
    role_arn               = string
    destination_bucket_arn = string
    replica_kms_key_arn    = string
  })
  default = null
}

variable "force_destroy" {
  description = "Allow destroying the bucket with objects in it (labs and tests only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
