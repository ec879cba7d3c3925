locals {
  roles = var.role_families

  # Least privilege on the lake: the collector only lands raw objects; Spark
  # reads raw and writes the refined tiers and the archive. Nobody deletes
  # raw data (versioning + lifecycle handle retention).
  lake_access = {
    collector = {
      read  = []
      write = ["raw"]
    }
    spark = {
      read  = ["raw", "processed", "curated", "archive"]
      write = ["processed", "curated", "archive"]
    }
  }
}

data "aws_region" "current" {}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each           = toset(local.roles)
  name               = "${var.name}-${each.key}"
  description        = "FMS ${each.key} instances"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = merge(var.tags, { Role = each.key })
}

resource "aws_iam_instance_profile" "this" {
  for_each = aws_iam_role.this
  name     = each.value.name
  role     = each.value.name
  tags     = var.tags
}

data "aws_iam_policy_document" "lake" {
  for_each = local.lake_access

  statement {
    sid       = "ListLakeBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for t in distinct(concat(each.value.read, each.value.write)) : var.lake_bucket_arns[t]]
  }

  dynamic "statement" {
    for_each = length(each.value.read) > 0 ? [1] : []
    content {
      sid       = "ReadLakeObjects"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = [for t in each.value.read : "${var.lake_bucket_arns[t]}/*"]
    }
  }

  statement {
    sid       = "WriteLakeObjects"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = [for t in each.value.write : "${var.lake_bucket_arns[t]}/*"]
  }

  statement {
    sid       = "UseLakeKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "lake" {
  for_each = local.lake_access
  name     = "data-lake-access"
  role     = aws_iam_role.this[each.key].id
  policy   = data.aws_iam_policy_document.lake[each.key].json
}
