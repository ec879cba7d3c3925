locals {
  count = var.enabled ? 1 : 0

  # AmazonEMRServicePolicy_v2 lets EMR launch instances and network interfaces
  # only into subnets and security groups carrying this tag, and manage only
  # resources carrying it; EMR copies it from the cluster to what it creates.
  # Resources EMR uses but does not create need it too: the security groups
  # below, and the cluster's subnet (the env root tags the private tier with
  # output.managed_policy_tags when EMR is on).
  managed_policy_tags = { "for-use-with-amazon-emr-managed-policies" = "true" }

  # s3://bucket/key.zip -> arn:...:s3:::bucket/key.zip (null when not set)
  certificate_object_arn = var.in_transit_certificate_zip == null ? null : "arn:${data.aws_partition.current.partition}:s3:::${trimprefix(var.in_transit_certificate_zip, "s3://")}"
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

# AmazonEMRServicePolicy_v2 may pass only a role named EMR_EC2_DefaultRole to
# EC2; this cluster's instance role has the stack's name, so the service role
# gets the right to pass exactly that role (without it RunInstances is denied
# and the cluster fails with "insufficient EC2 permissions").
data "aws_iam_policy_document" "service_pass_instance_role" {
  count = local.count
  statement {
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.instance[0].arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "service_pass_instance_role" {
  count  = local.count
  name   = "pass-emr-instance-role"
  role   = aws_iam_role.service[0].id
  policy = data.aws_iam_policy_document.service_pass_instance_role[0].json
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
  # Every node fetches the in-transit TLS certificates with its instance profile.
  dynamic "statement" {
    for_each = local.certificate_object_arn == null ? [] : [local.certificate_object_arn]
    content {
      actions   = ["s3:GetObject"]
      resources = [statement.value]
    }
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
  tags                   = merge(var.tags, local.managed_policy_tags)
}

resource "aws_security_group" "core" {
  # checkov:skip=CKV2_AWS_5:Attached by EMR through emr_managed_slave_security_group.
  count                  = local.count
  name                   = "${var.name}-emr-core"
  description            = "EMR core nodes (rules managed by EMR)"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = merge(var.tags, local.managed_policy_tags)
}

resource "aws_security_group" "service_access" {
  # checkov:skip=CKV2_AWS_5:Attached by EMR through service_access_security_group.
  count                  = local.count
  name                   = "${var.name}-emr-service-access"
  description            = "EMR service access for clusters in private subnets (rules managed by EMR)"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = merge(var.tags, local.managed_policy_tags)
}

resource "aws_emr_security_configuration" "this" {
  count = local.count
  name  = "${var.name}-emr"
  configuration = jsonencode({
    EncryptionConfiguration = {
      EnableAtRestEncryption    = true
      EnableInTransitEncryption = true
      # EMR turns on the open-source components' own in-transit encryption
      # (Hadoop, Spark, ...) with the PEM files every node fetches from S3.
      InTransitEncryptionConfiguration = {
        TLSCertificateConfiguration = {
          CertificateProviderType = "PEM"
          S3Object                = var.in_transit_certificate_zip
        }
      }
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

  # EMR propagates the managed-policy tag to the instances, volumes and
  # network interfaces it creates; AmazonEMRServicePolicy_v2 requires it there.
  tags = merge(var.tags, local.managed_policy_tags, { Role = "emr" })

  depends_on = [aws_iam_role_policy.service_pass_instance_role]
}
