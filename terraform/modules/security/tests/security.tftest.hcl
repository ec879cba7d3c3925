mock_provider "aws" {}

# The module is tested with the real platform contract (the repository root's
# platform.yml, as the env roots pass it): the assertions below are about the
# platform's rules, not about a fixture that could drift from them.
variables {
  name            = "fms-test"
  vpc_id          = "vpc-12345678"
  vpc_cidr        = "10.10.0.0/16"
  security_groups = yamldecode(file("../../../platform.yml")).security_groups
  cidr_classes    = yamldecode(file("../../../platform.yml")).cidr_classes
  ports           = yamldecode(file("../../../platform.yml")).ports
}

run "one_group_per_role_and_no_world_ingress" {
  command = plan

  assert {
    condition     = toset(keys(aws_security_group.this)) == toset(["bastion", "kafka", "hdfs", "spark", "monitoring", "collector"])
    error_message = "There must be exactly one security group per role."
  }
  assert {
    condition     = length(aws_security_group_rule.from_cidr) == 0
    error_message = "Without admin, dashboard or peer CIDRs no CIDR-based ingress may exist."
  }
  assert {
    condition     = alltrue([for r in aws_security_group_rule.from_group : contains(["tcp", "udp"], r.protocol) && r.description != ""])
    error_message = "Group-to-group rules must be TCP or UDP and described."
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
    condition     = aws_security_group_rule.from_group["spark<-spark:${var.ports.spark_rpc.port}"].to_port == var.ports.spark_rpc.port_to
    error_message = "The Spark RPC range must be one rule spanning the contract's spark_rpc range."
  }
  assert {
    condition     = aws_security_group_rule.from_group["kafka<-kafka:${var.ports.kafka_internal.port}"].description == "Kafka inter-broker listener"
    error_message = "Brokers must reach each other on the INTERNAL listener port of the contract."
  }
  assert {
    condition     = alltrue([for p in ["hdfs_namenode_jmx_exporter", "hdfs_datanode_jmx_exporter"] : contains(keys(aws_security_group_rule.from_group), "hdfs<-monitoring:${var.ports[p].port}")])
    error_message = "Monitoring must reach the HDFS JMX exporters on their own ports."
  }
  assert {
    condition     = alltrue([for p in ["spark_master_jmx_exporter", "spark_worker_jmx_exporter"] : contains(keys(aws_security_group_rule.from_group), "spark<-monitoring:${var.ports[p].port}")])
    error_message = "Monitoring must reach the Spark JMX exporters on their own ports."
  }
  assert {
    condition     = aws_security_group_rule.from_group["monitoring<-monitoring:9094/udp"].protocol == "udp" && aws_security_group_rule.from_group["monitoring<-monitoring:9094"].protocol == "tcp"
    error_message = "Alertmanager gossip needs TCP and UDP between monitoring hosts."
  }
  assert {
    condition     = length(aws_security_group_rule.egress_peer) == 0
    error_message = "Without a peer region there is no egress to it."
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

run "peer_cidr_reaches_kafka_client_only_both_ways" {
  command = plan
  variables {
    replication_peer_cidrs = ["10.20.0.0/16"]
  }
  assert {
    condition     = keys(aws_security_group_rule.from_cidr) == ["kafka<-10.20.0.0/16:9092"]
    error_message = "The peer region reaches Kafka's client listener and nothing else."
  }
  assert {
    condition     = keys(aws_security_group_rule.egress_peer) == ["kafka->10.20.0.0/16:9092"] && aws_security_group_rule.egress_peer["kafka->10.20.0.0/16:9092"].type == "egress"
    error_message = "Kafka (MirrorMaker 2) reaches the peer region's client listener."
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

# Contract mistakes stop the plan with the variable's message instead of
# producing a rule set nobody designed.
run "rejects_rule_to_unknown_group" {
  command = plan
  variables {
    ports = {
      ssh = { port = 22, description = "OpenSSH", ingress = [{ to = ["kafak"], from = ["bastion"], description = "SSH from bastion" }] }
    }
  }
  expect_failures = [var.ports]
}

run "rejects_rule_from_unknown_source" {
  command = plan
  variables {
    ports = {
      ssh = { port = 22, description = "OpenSSH", ingress = [{ to = ["kafka"], from = ["internet"], description = "SSH" }] }
    }
  }
  expect_failures = [var.ports]
}

run "rejects_port_outside_its_range" {
  command = plan
  variables {
    ports = {
      rpc    = { port = 7078, port_to = 7099, description = "RPC range", ingress = [{ to = ["spark"], from = ["spark"], description = "RPC range" }] }
      driver = { port = 7100, description = "Driver", within = "rpc" }
    }
  }
  expect_failures = [var.ports]
}

run "rejects_inventory_group_in_two_security_groups" {
  command = plan
  variables {
    security_groups = {
      kafka = { description = "Kafka", inventory_groups = ["kafka", "kafka_controller"] }
      hdfs  = { description = "HDFS", inventory_groups = ["hdfs_namenode", "kafka"] }
    }
    ports = {}
  }
  expect_failures = [var.security_groups]
}
