mock_provider "aws" {}

variables {
  name     = "fms-test"
  vpc_id   = "vpc-12345678"
  vpc_cidr = "10.10.0.0/16"
}

run "one_group_per_role_and_no_world_ingress" {
  command = plan

  assert {
    condition     = toset(keys(aws_security_group.this)) == toset(["bastion", "kafka", "hdfs", "spark", "monitoring", "collector"])
    error_message = "There must be exactly one security group per role."
  }
  assert {
    condition     = length(aws_security_group_rule.from_cidr) == 0
    error_message = "Without admin or dashboard CIDRs no CIDR-based ingress may exist."
  }
  assert {
    condition     = alltrue([for r in aws_security_group_rule.from_group : r.protocol == "tcp" && r.description != ""])
    error_message = "Group-to-group rules must be TCP and described."
  }
  assert {
    condition     = contains(keys(aws_security_group_rule.from_group), "kafka<-collector:9092") && !contains(keys(aws_security_group_rule.from_group), "hdfs<-collector:8020")
    error_message = "The collector reaches Kafka's client listener and nothing in HDFS."
  }
  assert {
    condition     = length([for k, r in aws_security_group_rule.from_group : k if startswith(k, "kafka<-") && endswith(k, ":9093")]) == 1
    error_message = "Only Kafka nodes may reach the KRaft controller listener."
  }
  assert {
    condition     = aws_security_group_rule.from_group["spark<-spark:7078"].to_port == 7099
    error_message = "The Spark RPC range must span spark_rpc_range_from..to."
  }
}

run "admin_cidr_opens_ssh_on_bastion_only" {
  command = plan
  variables {
    admin_cidrs = ["203.0.113.0/24"]
  }
  assert {
    condition     = length(aws_security_group_rule.from_cidr) == 1 && aws_security_group_rule.from_cidr["bastion<-203.0.113.0/24:22"].from_port == 22
    error_message = "An admin CIDR must open exactly SSH on the bastion."
  }
}

run "rejects_world_open_admin_cidr" {
  command = plan
  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "world_open_admin_cidr_with_explicit_opt_in" {
  command = plan
  variables {
    admin_cidrs              = ["0.0.0.0/0"]
    allow_world_admin_access = true
  }
  assert {
    condition     = length(aws_security_group_rule.from_cidr) == 1
    error_message = "With the explicit opt-in the /0 admin rule is created."
  }
}

run "rejects_world_open_dashboards" {
  command = plan
  variables {
    dashboard_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.dashboard_cidrs]
}
