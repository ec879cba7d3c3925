# One private, versioned, encrypted, TLS-only bucket with its lifecycle,
# logging and (optionally) replication: the storage module's building block.

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV2_AWS_62:No consumer needs S3 event notifications; the pipeline addresses data by partition.
  # checkov:skip=CKV_AWS_144:Replication is optional per bucket (var.replication); the DR stack's buckets are its targets and the access-log bucket stays regional.
  # checkov:skip=CKV_AWS_18:Logging is configured by aws_s3_bucket_logging below for every bucket except the access-log target itself, which cannot log into itself.
  # checkov:skip=CKV_AWS_145:SSE-KMS is used whenever kms_key_arn is set; S3 requires SSE-S3 on access-log target buckets.
  bucket        = var.name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_logging" "this" {
  count         = var.access_log_target == null ? 0 : 1
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_target.bucket
  target_prefix = var.access_log_target.prefix
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "tiering-and-retention"
    status = "Enabled"
    filter {}

    dynamic "transition" {
      for_each = var.lifecycle_transitions
      content {
        days          = transition.value.days
        storage_class = transition.value.storage_class
      }
    }

    dynamic "expiration" {
      for_each = var.expiration_days == null ? [] : [var.expiration_days]
      content {
        days = expiration.value
      }
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "this" {
  # The log-delivery grant comes first: the lab's AWS emulator stops reading
  # at the first statement it cannot parse; AWS does not care about order.
  dynamic "statement" {
    for_each = var.accepts_access_logs ? [1] : []
    content {
      sid       = "S3ServerAccessLogsWrite"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this.arn}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket     = aws_s3_bucket.this.id
  policy     = data.aws_iam_policy_document.this.json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_replication_configuration" "this" {
  count  = var.replication == null ? 0 : 1
  bucket = aws_s3_bucket.this.id
  role   = var.replication.role_arn

  rule {
    id     = "to-dr-region"
    status = "Enabled"
    filter {}
    delete_marker_replication {
      status = "Enabled"
    }
    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = var.replication.destination_bucket_arn
      storage_class = "STANDARD"
      encryption_configuration {
        replica_kms_key_id = var.replication.replica_kms_key_arn
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}
