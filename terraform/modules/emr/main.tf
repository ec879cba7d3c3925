locals {
  count = var.enabled ? 1 : 0
}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "service_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["elasticmapreduce.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "service" {
  count              = local.count
  name               = "${var.name}-emr-service"
  assume_role_policy = data.aws_iam_policy_document.service_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "service" {
  count      = local.count
  role       = aws_iam_role.service[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
}

resource "aws_iam_role" "instance" {
  count              = local.count
  name               = "${var.name}-emr-instance"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "instance_logs" {
  statement {
    actions   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.log_bucket}", "arn:${data.aws_partition.current.partition}:s3:::${var.log_bucket}/emr-logs/*"]
  }
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "instance_logs" {
  count  = local.count
  name   = "emr-logs"
  role   = aws_iam_role.instance[0].id
  policy = data.aws_iam_policy_document.instance_logs.json
}

resource "aws_iam_instance_profile" "instance" {
  count = local.count
  name  = aws_iam_role.instance[0].name
  role  = aws_iam_role.instance[0].name
  tags  = var.tags
}

# EMR manages the rules of these groups itself; they start empty.
resource "aws_security_group" "primary" {
  # checkov:skip=CKV2_AWS_5:Attached by EMR through emr_managed_master_security_group.
  count                  = local.count
  name                   = "${var.name}-emr-primary"
  description            = "EMR primary node (rules managed by EMR)"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = var.tags
}

resource "aws_security_group" "core" {
  # checkov:skip=CKV2_AWS_5:Attached by EMR through emr_managed_slave_security_group.
  count                  = local.count
  name                   = "${var.name}-emr-core"
  description            = "EMR core nodes (rules managed by EMR)"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = var.tags
}

resource "aws_security_group" "service_access" {
  # checkov:skip=CKV2_AWS_5:Attached by EMR through service_access_security_group.
  count                  = local.count
  name                   = "${var.name}-emr-service-access"
  description            = "EMR service access for clusters in private subnets (rules managed by EMR)"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = var.tags
}

resource "aws_emr_security_configuration" "this" {
  count = local.count
  name  = "${var.name}-emr"
  configuration = jsonencode({
    EncryptionConfiguration = {
      EnableAtRestEncryption    = true
      EnableInTransitEncryption = false
      AtRestEncryptionConfiguration = {
        S3EncryptionConfiguration = {
          EncryptionMode = "SSE-KMS"
          AwsKmsKey      = var.kms_key_arn
        }
        LocalDiskEncryptionConfiguration = {
          EncryptionKeyProviderType = "AwsKms"
          AwsKmsKey                 = var.kms_key_arn
          EnableEbsEncryption       = true
        }
      }
    }
    InstanceMetadataServiceConfiguration = {
      MinimumInstanceMetadataServiceVersion = 2
      HttpPutResponseHopLimit               = 1
    }
  })
}

resource "aws_emr_cluster" "this" {
  # checkov:skip=CKV_AWS_114:Kerberos needs a KDC the platform does not run; the cluster sits in a private subnet reachable only from the platform's security groups.
  count                             = local.count
  name                              = "${var.name}-spark"
  release_label                     = var.release_label
  applications                      = ["Hadoop", "Spark"]
  service_role                      = aws_iam_role.service[0].arn
  security_configuration            = aws_emr_security_configuration.this[0].name
  log_uri                           = "s3://${var.log_bucket}/emr-logs/"
  log_encryption_kms_key_id         = var.kms_key_arn
  termination_protection            = false
  keep_job_flow_alive_when_no_steps = true
  visible_to_all_users              = true

  ec2_attributes {
    subnet_id                         = var.subnet_id
    instance_profile                  = aws_iam_instance_profile.instance[0].arn
    emr_managed_master_security_group = aws_security_group.primary[0].id
    emr_managed_slave_security_group  = aws_security_group.core[0].id
    service_access_security_group     = aws_security_group.service_access[0].id
  }

  master_instance_group {
    instance_type = var.master_instance_type
  }

  core_instance_group {
    instance_type  = var.core_instance_type
    instance_count = var.core_instance_count
    ebs_config {
      size                 = 200
      type                 = "gp3"
      volumes_per_instance = 1
    }
  }

  configurations_json = jsonencode([
    { Classification = "spark-defaults", Properties = { "spark.authenticate" = "true", "spark.sql.parquet.compression.codec" = "snappy" } },
  ])

  tags = merge(var.tags, { Role = "emr" })
}
