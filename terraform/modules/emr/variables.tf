variable "enabled" {
  description = "Create the EMR cluster (an alternative Spark runtime to the standalone Spark VMs)."
  type        = bool
  default     = false
}

variable "name" {
  description = "Cluster name prefix."
  type        = string
}

variable "release_label" {
  description = "EMR release (emr-7.x ships Spark 3.5 and Hadoop 3.3/3.4)."
  type        = string
  default     = "emr-7.9.0"
  validation {
    condition     = can(regex("^emr-[67]\\.[0-9]+\\.[0-9]+$", var.release_label))
    error_message = "release_label must be an EMR 6.x or 7.x release such as emr-7.9.0."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_id" {
  description = "Private subnet for the cluster (EMR uses one subnet per instance-group cluster)."
  type        = string
}

variable "master_instance_type" {
  description = "Primary node instance type."
  type        = string
  default     = "m6i.xlarge"
}

variable "core_instance_type" {
  description = "Core node instance type."
  type        = string
  default     = "r6i.2xlarge"
}

variable "core_instance_count" {
  description = "Number of core nodes (HDFS + YARN)."
  type        = number
  default     = 3
  validation {
    condition     = var.core_instance_count >= 1 && var.core_instance_count <= 100
    error_message = "core_instance_count must be between 1 and 100."
  }
}

variable "log_bucket" {
  description = "Bucket receiving EMR logs (under emr-logs/)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for at-rest encryption (S3, local disks, EBS)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "in_transit_certificate_zip" {
  description = <<-EOT
    S3 URL (s3://bucket/key.zip) of the PEM files EMR's in-transit encryption uses,
    required with enabled = true. The zip holds privateKey.pem, certificateChain.pem
    and trustedCertificates.pem (the CA: the certificate is not from a public CA).
    Sign a wildcard certificate for the nodes' private DNS names
    (*.<region>.compute.internal) with the site CA Ansible keeps in
    ansible/secrets/<site>/pki/, so the platform's clients and the cluster trust each
    other. Keep the object in a private bucket, encrypted with SSE-S3 or the
    stack's KMS key (kms_key_arn): the instance role gets s3:GetObject on exactly
    this object and can decrypt with that key only.
  EOT
  type        = string
  default     = null
  validation {
    condition     = var.in_transit_certificate_zip == null || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\\.zip$", var.in_transit_certificate_zip))
    error_message = "in_transit_certificate_zip must be an S3 URL of a zip file: s3://bucket/path/certs.zip."
  }
  validation {
    condition     = !var.enabled || var.in_transit_certificate_zip != null
    error_message = "EMR encrypts traffic in transit: set in_transit_certificate_zip (env root: emr_in_transit_certificate_zip) to the S3 URL of the certificate zip."
  }
}
