mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "ap-northeast-2" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name               = "fms-test"
  vpc_cidr           = "10.10.0.0/16"
  availability_zones = ["ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"]
  kms_key_arn        = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
}

run "three_tiers_in_every_az" {
  command = plan

  assert {
    condition     = length(aws_subnet.this) == 9
    error_message = "Expected 3 tiers x 3 AZs = 9 subnets."
  }
  assert {
    condition     = [for i in range(3) : aws_subnet.this["public-${i}"].cidr_block] == ["10.10.0.0/24", "10.10.1.0/24", "10.10.2.0/24"]
    error_message = "Public subnets must be the first /24s of the VPC."
  }
  assert {
    condition     = [for i in range(3) : aws_subnet.this["private-${i}"].cidr_block] == ["10.10.64.0/24", "10.10.65.0/24", "10.10.66.0/24"]
    error_message = "Private subnets must start at the first quarter of the VPC."
  }
  assert {
    condition     = [for i in range(3) : aws_subnet.this["data-${i}"].cidr_block] == ["10.10.128.0/24", "10.10.129.0/24", "10.10.130.0/24"]
    error_message = "Data subnets must start at the half of the VPC."
  }
  assert {
    condition     = alltrue([for i in range(3) : aws_subnet.this["data-${i}"].availability_zone == var.availability_zones[i] && aws_subnet.this["private-${i}"].availability_zone == var.availability_zones[i]])
    error_message = "Subnet i of a tier must sit in availability_zones[i]."
  }
  assert {
    condition     = length(aws_nat_gateway.this) == 3 && length(aws_route_table.private) == 3
    error_message = "By default every AZ gets its own NAT gateway and private route table."
  }
  assert {
    condition     = aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway" && aws_vpc_endpoint.s3.service_name == "com.amazonaws.ap-northeast-2.s3"
    error_message = "An S3 gateway endpoint must exist."
  }
  assert {
    condition     = aws_flow_log.this.traffic_type == "ALL" && aws_cloudwatch_log_group.flow_logs.kms_key_id == var.kms_key_arn
    error_message = "Flow logs must capture ALL traffic into a KMS-encrypted log group."
  }
}

run "single_nat_gateway" {
  command = plan
  variables {
    single_nat_gateway = true
  }
  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_route_table.private) == 3
    error_message = "single_nat_gateway must create exactly one NAT while keeping one route table per AZ."
  }
}

run "rejects_a_single_az" {
  command = plan
  variables {
    availability_zones = ["ap-northeast-2a"]
  }
  expect_failures = [var.availability_zones]
}

run "rejects_duplicate_azs" {
  command = plan
  variables {
    availability_zones = ["ap-northeast-2a", "ap-northeast-2a"]
  }
  expect_failures = [var.availability_zones]
}

run "rejects_overlapping_peer_cidr" {
  command = plan
  variables {
    non_overlapping_cidrs = ["10.10.128.0/17"]
  }
  expect_failures = [var.non_overlapping_cidrs]
}

run "rejects_enclosing_peer_cidr" {
  command = plan
  variables {
    non_overlapping_cidrs = ["10.0.0.0/8"]
  }
  expect_failures = [var.non_overlapping_cidrs]
}

run "accepts_adjacent_peer_cidr" {
  command = plan
  variables {
    non_overlapping_cidrs = ["10.11.0.0/16", "10.9.0.0/16"]
  }
}

run "rejects_host_bits_in_vpc_cidr" {
  command = plan
  variables {
    vpc_cidr = "10.10.1.0/16"
  }
  expect_failures = [var.vpc_cidr]
}

run "tier_tags_reach_only_their_tier" {
  command = plan
  variables {
    subnet_tier_tags = { private = { "for-use-with-amazon-emr-managed-policies" = "true" } }
  }
  assert {
    condition     = alltrue([for i in range(3) : aws_subnet.this["private-${i}"].tags["for-use-with-amazon-emr-managed-policies"] == "true"])
    error_message = "Every private subnet carries the tier's extra tags."
  }
  assert {
    condition     = alltrue([for i in range(3) : !contains(keys(aws_subnet.this["data-${i}"].tags), "for-use-with-amazon-emr-managed-policies") && !contains(keys(aws_subnet.this["public-${i}"].tags), "for-use-with-amazon-emr-managed-policies")])
    error_message = "Other tiers do not get them."
  }
}

run "rejects_unknown_tier_in_tier_tags" {
  command = plan
  variables {
    subnet_tier_tags = { dmz = { a = "b" } }
  }
  expect_failures = [var.subnet_tier_tags]
}
