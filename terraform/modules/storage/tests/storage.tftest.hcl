mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/replication" }
  }
}

variables {
  bucket_prefix = "fms-test-123456789012-apne2"
  kms_key_arn   = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
}

run "four_lake_tiers_and_a_log_bucket" {
  command = apply
  assert {
    condition     = toset(keys(output.bucket_names)) == toset(["raw", "processed", "curated", "archive"])
    error_message = "The lake has exactly the raw, processed, curated and archive tiers."
  }
  assert {
    condition     = output.bucket_names["raw"] == "fms-test-123456789012-apne2-raw" && output.access_log_bucket == "fms-test-123456789012-apne2-access-logs"
    error_message = "Bucket names are <prefix>-<tier>."
  }
  assert {
    condition     = length(aws_iam_role.replication) == 0 && !output.replication_enabled
    error_message = "Replication is off by default."
  }
}

run "replication_to_dr" {
  command = apply
  variables {
    replication = {
      enabled                 = true
      destination_bucket_arns = { raw = "arn:aws:s3:::dr-raw", processed = "arn:aws:s3:::dr-processed", curated = "arn:aws:s3:::dr-curated", archive = "arn:aws:s3:::dr-archive" }
      destination_kms_key_arn = "arn:aws:kms:ap-northeast-1:123456789012:key/dr"
    }
  }
  assert {
    condition     = length(aws_iam_role.replication) == 1 && output.replication_enabled
    error_message = "Replication creates its IAM role."
  }
}

run "rejects_replication_without_destinations" {
  command = plan
  variables {
    replication = { enabled = true }
  }
  expect_failures = [var.replication]
}

run "rejects_early_glacier" {
  command = plan
  variables {
    transition_to_glacier_days = 40
  }
  expect_failures = [var.transition_to_glacier_days]
}
