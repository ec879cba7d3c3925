# Daily EBS snapshots of the platform's data volumes (Kafka logs, HDFS blocks and metadata),
# kept retain_count days, by an Amazon Data Lifecycle Manager policy: the volumes are selected
# by tag, so a node Terraform replaces or adds is covered without a change here. Snapshots keep
# the volume's own encryption (the platform KMS key) and its tags.
data "aws_partition" "current" {}

data "aws_iam_policy_document" "dlm_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dlm" {
  count              = var.enabled ? 1 : 0
  name               = "${var.name}-dlm"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json
  tags               = var.tags
}

# AWS's managed policy for DLM's default role: create, tag and delete snapshots (EBS only).
resource "aws_iam_role_policy_attachment" "dlm" {
  count      = var.enabled ? 1 : 0
  role       = aws_iam_role.dlm[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}

resource "aws_dlm_lifecycle_policy" "data_volumes" {
  count              = var.enabled ? 1 : 0
  description        = "${var.name} daily data volume snapshots - ${var.retain_count} kept" # [0-9A-Za-z _-] only
  execution_role_arn = aws_iam_role.dlm[0].arn
  state              = "ENABLED"
  tags               = var.tags

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = var.target_tags

    schedule {
      name      = "daily-${var.retain_count}"
      copy_tags = true
      tags_to_add = {
        SnapshotCreator = "dlm:${var.name}"
      }

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = [var.daily_at]
      }

      retain_rule {
        count = var.retain_count
      }
    }
  }

  depends_on = [aws_iam_role_policy_attachment.dlm]
}
