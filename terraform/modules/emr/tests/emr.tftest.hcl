# The AWS emulator lacks parts of the EMR API (e.g. ListInstanceFleets), so the
# EMR module is proven here against a mock provider, at plan and apply.
mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/fms-test-emr-service" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/fms-test-emr-instance" }
  }
}

variables {
  name        = "fms-test"
  vpc_id      = "vpc-12345678"
  subnet_id   = "subnet-prv0"
  log_bucket  = "fms-test-access-logs"
  kms_key_arn = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
}

run "disabled_by_default" {
  command = plan
  assert {
    condition     = length(aws_emr_cluster.this) == 0 && length(aws_security_group.primary) == 0
    error_message = "Without enabled = true nothing is created."
  }
}

run "spark_cluster_in_private_subnet" {
  command = apply
  variables {
    enabled                    = true
    in_transit_certificate_zip = "s3://fms-test-config/emr/certs.zip"
  }
  assert {
    condition     = toset(aws_emr_cluster.this[0].applications) == toset(["Hadoop", "Spark"])
    error_message = "The cluster runs Spark and Hadoop."
  }
  assert {
    condition     = aws_emr_cluster.this[0].ec2_attributes[0].subnet_id == "subnet-prv0" && aws_emr_cluster.this[0].ec2_attributes[0].service_access_security_group != null
    error_message = "The cluster sits in the private subnet with a service-access group."
  }
  assert {
    condition     = aws_emr_cluster.this[0].log_uri == "s3://fms-test-access-logs/emr-logs/"
    error_message = "Logs go to S3."
  }
  assert {
    condition     = jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.EnableAtRestEncryption
    error_message = "At-rest encryption is on."
  }
  assert {
    condition     = jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.EnableInTransitEncryption
    error_message = "In-transit encryption is on."
  }
  assert {
    condition = (
      jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.InTransitEncryptionConfiguration.TLSCertificateConfiguration
      == { CertificateProviderType = "PEM", S3Object = "s3://fms-test-config/emr/certs.zip" }
    )
    error_message = "In-transit TLS uses the PEM zip given in in_transit_certificate_zip."
  }
  assert {
    condition = alltrue([
      for tags in [
        aws_emr_cluster.this[0].tags,
        aws_security_group.primary[0].tags,
        aws_security_group.core[0].tags,
        aws_security_group.service_access[0].tags,
      ] : lookup(tags, "for-use-with-amazon-emr-managed-policies", "") == "true"
    ])
    error_message = "AmazonEMRServicePolicy_v2 needs for-use-with-amazon-emr-managed-policies = true on the cluster and on the security groups EMR did not create."
  }
  assert {
    condition     = output.managed_policy_tags == { "for-use-with-amazon-emr-managed-policies" = "true" }
    error_message = "The tag is exported for the cluster's subnet."
  }
  assert {
    condition     = aws_iam_role_policy.service_pass_instance_role[0].role == aws_iam_role.service[0].id
    error_message = "The service role may pass the instance role (the v2 policy passes only EMR_EC2_DefaultRole)."
  }
  assert {
    condition     = output.cluster_id != null
    error_message = "The cluster ID is exported."
  }
}

run "enabled_without_certificates_is_rejected" {
  command = plan
  variables {
    enabled = true
  }
  expect_failures = [var.in_transit_certificate_zip]
}

run "rejects_a_certificate_location_that_is_no_s3_zip" {
  command = plan
  variables {
    enabled                    = true
    in_transit_certificate_zip = "https://example.com/certs.zip"
  }
  expect_failures = [var.in_transit_certificate_zip]
}

run "rejects_unknown_release" {
  command = plan
  variables {
    enabled                    = true
    in_transit_certificate_zip = "s3://fms-test-config/emr/certs.zip"
    release_label              = "emr-5.36.0"
  }
  expect_failures = [var.release_label]
}
