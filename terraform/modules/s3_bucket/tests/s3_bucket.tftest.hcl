mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::fms-test-raw" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name        = "fms-test-raw"
  kms_key_arn = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
  access_log_target = {
    bucket = "fms-test-access-logs"
    prefix = "raw/"
  }
  lifecycle_transitions = [
    { days = 30, storage_class = "STANDARD_IA" },
    { days = 365, storage_class = "GLACIER" },
  ]
  expiration_days = 1096
}

run "private_versioned_encrypted_tiered_tls_only" {
  command = apply

  assert {
    condition     = aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy && aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets
    error_message = "Public access must be blocked in all four ways."
  }
  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning must be on."
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == var.kms_key_arn
    error_message = "SSE-KMS with the given key."
  }
  assert {
    condition     = toset([for t in aws_s3_bucket_lifecycle_configuration.this.rule[0].transition : "${t.storage_class}@${t.days}"]) == toset(["STANDARD_IA@30", "GLACIER@365"])
    error_message = "Lifecycle: Standard-IA after 30 days, Glacier after 365."
  }
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[0].expiration[0].days == 1096 && aws_s3_bucket_lifecycle_configuration.this.rule[0].abort_incomplete_multipart_upload[0].days_after_initiation == 7
    error_message = "Expiry after 3 years and incomplete uploads aborted."
  }
  assert {
    condition     = aws_s3_bucket_logging.this[0].target_bucket == "fms-test-access-logs" && aws_s3_bucket_logging.this[0].target_prefix == "raw/"
    error_message = "Access logs go to the log bucket under the tier prefix."
  }
  assert {
    condition     = length(aws_s3_bucket_replication_configuration.this) == 0
    error_message = "No replication unless asked for."
  }
}

run "access_log_target_uses_sse_s3_and_grants_log_delivery" {
  command = plan
  variables {
    name                = "fms-test-access-logs"
    kms_key_arn         = null
    access_log_target   = null
    accepts_access_logs = true
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "AES256" && length(aws_s3_bucket_logging.this) == 0
    error_message = "The log target uses SSE-S3 (required by S3 logging) and does not log into itself."
  }
}

run "replicates_with_the_destination_key" {
  command = plan
  variables {
    replication = {
      role_arn               = "arn:aws:iam::123456789012:role/replication"
      destination_bucket_arn = "arn:aws:s3:::fms-dr-raw"
      replica_kms_key_arn    = "arn:aws:kms:ap-northeast-1:123456789012:key/dr"
    }
  }
  assert {
    condition     = aws_s3_bucket_replication_configuration.this[0].rule[0].destination[0].bucket == "arn:aws:s3:::fms-dr-raw" && aws_s3_bucket_replication_configuration.this[0].rule[0].destination[0].encryption_configuration[0].replica_kms_key_id == "arn:aws:kms:ap-northeast-1:123456789012:key/dr"
    error_message = "Replication goes to the DR bucket, encrypted with the DR key."
  }
}

run "rejects_unknown_storage_class" {
  command = plan
  variables {
    lifecycle_transitions = [{ days = 30, storage_class = "COLD" }]
  }
  expect_failures = [var.lifecycle_transitions]
}
