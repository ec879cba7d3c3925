variable "name" {
  description = "Name prefix for roles and instance profiles."
  type        = string
}

variable "role_families" {
  description = "Role families that get an IAM role and instance profile: the security groups of the platform contract (keys of platform.yml `security_groups`); the compute module gives each instance its family's profile."
  type        = list(string)
  validation {
    condition     = length(var.role_families) > 0 && alltrue([for f in var.role_families : can(regex("^[a-z][a-z0-9_]*$", f))]) && contains(var.role_families, "spark") && contains(var.role_families, "collector")
    error_message = "role_families must list lower-case family names, including spark and collector (the lake users)."
  }
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
