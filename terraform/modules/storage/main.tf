locals {
  tiers = toset(["raw", "processed", "curated", "archive"])
}

module "access_logs" {
  source              = "../s3_bucket"
  name                = "${var.bucket_prefix}-access-logs"
  kms_key_arn         = null # S3 server access logging requires SSE-S3 on the target bucket
  accepts_access_logs = true
  expiration_days     = 365
  force_destroy       = var.force_destroy
  tags                = merge(var.tags, { Tier = "access-logs" })
}

module "lake" {
  source   = "../s3_bucket"
  for_each = local.tiers

  name        = "${var.bucket_prefix}-${each.key}"
  kms_key_arn = var.kms_key_arn
  access_log_target = {
    bucket = module.access_logs.log_delivery_target # waits for its log-delivery grant
    prefix = "${each.key}/"
  }
  lifecycle_transitions = [
    { days = var.transition_to_ia_days, storage_class = "STANDARD_IA" },
    { days = var.transition_to_glacier_days, storage_class = "GLACIER" },
  ]
  expiration_days                    = each.key == "archive" ? null : var.expiration_days
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  replication = var.replication.enabled ? {
    role_arn               = aws_iam_role.replication[0].arn
    destination_bucket_arn = var.replication.destination_bucket_arns[each.key]
    replica_kms_key_arn    = var.replication.destination_kms_key_arn
  } : null
  force_destroy = var.force_destroy
  tags          = merge(var.tags, { Tier = each.key })
}

# ---- cross-region replication (source side) --------------------------------

data "aws_iam_policy_document" "replication_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  count              = var.replication.enabled ? 1 : 0
  name               = "${var.bucket_prefix}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "replication" {
  count = var.replication.enabled ? 1 : 0
  statement {
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [for b in module.lake : b.arn]
  }
  statement {
    actions   = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
    resources = [for b in module.lake : "${b.arn}/*"]
  }
  statement {
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = [for t, arn in var.replication.destination_bucket_arns : "${arn}/*"]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.replication.destination_kms_key_arn]
  }
}

resource "aws_iam_role_policy" "replication" {
  count  = var.replication.enabled ? 1 : 0
  name   = "lake-replication"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}
