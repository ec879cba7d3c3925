locals {
  groups = ["bastion", "kafka", "hdfs", "spark", "monitoring", "collector"]
  p      = var.ports

  # Every ingress rule of the platform: to (group) <- from (group) on ports.
  # This table is the design; tests assert the emulator holds exactly it.
  sg_rules = [
    { to = "kafka", from = "bastion", port = local.p.ssh, desc = "SSH from bastion" },
    { to = "hdfs", from = "bastion", port = local.p.ssh, desc = "SSH from bastion" },
    { to = "spark", from = "bastion", port = local.p.ssh, desc = "SSH from bastion" },
    { to = "monitoring", from = "bastion", port = local.p.ssh, desc = "SSH from bastion" },
    { to = "collector", from = "bastion", port = local.p.ssh, desc = "SSH from bastion" },

    { to = "kafka", from = "collector", port = local.p.kafka_client, desc = "Kafka SASL_SSL client (collector produces)" },
    { to = "kafka", from = "spark", port = local.p.kafka_client, desc = "Kafka SASL_SSL client (streaming job)" },
    { to = "kafka", from = "kafka", port = local.p.kafka_client, desc = "Kafka SASL_SSL client (admin tools, MirrorMaker)" },
    { to = "kafka", from = "kafka", port = local.p.kafka_internal, desc = "Kafka inter-broker listener" },
    { to = "kafka", from = "kafka", port = local.p.kafka_controller, desc = "KRaft controller quorum" },

    { to = "hdfs", from = "hdfs", port = local.p.hdfs_namenode_rpc, desc = "NameNode RPC (DataNodes)" },
    { to = "hdfs", from = "spark", port = local.p.hdfs_namenode_rpc, desc = "NameNode RPC (Spark)" },
    { to = "hdfs", from = "hdfs", port = local.p.hdfs_datanode_data, desc = "DataNode data transfer (replication)" },
    { to = "hdfs", from = "spark", port = local.p.hdfs_datanode_data, desc = "DataNode data transfer (Spark)" },
    { to = "hdfs", from = "hdfs", port = local.p.hdfs_datanode_ipc, desc = "DataNode IPC" },
    { to = "hdfs", from = "bastion", port = local.p.hdfs_namenode_http, desc = "NameNode web UI from bastion" },
    { to = "hdfs", from = "hdfs", port = local.p.hdfs_namenode_http, desc = "NameNode HTTP (fsimage transfer)" },
    { to = "hdfs", from = "bastion", port = local.p.hdfs_datanode_http, desc = "DataNode web UI from bastion" },

    { to = "spark", from = "spark", port = local.p.spark_master, desc = "Spark master RPC (workers, drivers)" },
    { to = "spark", from = "spark", port = local.p.spark_rpc_range_from, port_to = local.p.spark_rpc_range_to, desc = "Spark worker, driver and block manager RPC range" },
    { to = "spark", from = "bastion", port = local.p.spark_master_ui, desc = "Spark master UI from bastion" },
    { to = "spark", from = "bastion", port = local.p.spark_worker_ui, desc = "Spark worker UI from bastion" },
    { to = "spark", from = "bastion", port = local.p.spark_driver_ui, desc = "Spark driver UI from bastion" },

    { to = "kafka", from = "monitoring", port = local.p.jmx_exporter, desc = "Prometheus scrapes the Kafka JMX exporter" },
    { to = "hdfs", from = "monitoring", port = local.p.jmx_exporter, desc = "Prometheus scrapes the HDFS JMX exporter" },
    { to = "spark", from = "monitoring", port = local.p.jmx_exporter, desc = "Prometheus scrapes the Spark JMX exporter" },
    { to = "spark", from = "monitoring", port = local.p.spark_master_ui, desc = "Prometheus scrapes Spark master metrics" },
    { to = "spark", from = "monitoring", port = local.p.spark_worker_ui, desc = "Prometheus scrapes Spark worker metrics" },
    { to = "spark", from = "monitoring", port = local.p.streaming_metrics, desc = "Prometheus scrapes streaming-job metrics" },
    { to = "collector", from = "monitoring", port = local.p.collector_metrics, desc = "Prometheus scrapes collector metrics" },
    { to = "hdfs", from = "monitoring", port = local.p.hdfs_namenode_http, desc = "Health checks of the NameNode" },
    { to = "bastion", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },
    { to = "kafka", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },
    { to = "hdfs", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },
    { to = "spark", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },
    { to = "monitoring", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },
    { to = "collector", from = "monitoring", port = local.p.node_exporter, desc = "Prometheus scrapes node_exporter" },

    { to = "monitoring", from = "bastion", port = local.p.prometheus, desc = "Prometheus UI from bastion" },
    { to = "monitoring", from = "bastion", port = local.p.alertmanager, desc = "Alertmanager UI from bastion" },
    { to = "monitoring", from = "bastion", port = local.p.grafana, desc = "Grafana from bastion" },
    { to = "monitoring", from = "monitoring", port = local.p.alertmanager, desc = "Prometheus sends alerts to Alertmanager" },
    { to = "monitoring", from = "monitoring", port = local.p.alertmanager_cluster, desc = "Alertmanager cluster gossip" },
  ]

  cidr_rules = concat(
    [for c in var.admin_cidrs : { to = "bastion", cidr = c, port = local.p.ssh, desc = "SSH from admin network" }],
    flatten([for c in var.dashboard_cidrs : [
      { to = "monitoring", cidr = c, port = local.p.grafana, desc = "Grafana from dashboard network" },
      { to = "monitoring", cidr = c, port = local.p.prometheus, desc = "Prometheus from dashboard network" },
      { to = "monitoring", cidr = c, port = local.p.alertmanager, desc = "Alertmanager from dashboard network" },
    ]]),
    [for c in var.replication_peer_cidrs : { to = "kafka", cidr = c, port = local.p.kafka_client, desc = "MirrorMaker 2 in the peer region" }],
  )
}

resource "aws_security_group" "this" {
  # checkov:skip=CKV2_AWS_5:Attached to instances by the compute module (vpc_security_group_ids); checkov cannot follow the reference across modules.
  for_each    = toset(local.groups)
  name        = "${var.name}-${each.key}"
  description = "FMS ${each.key} nodes"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}", Role = each.key })

  lifecycle {
    create_before_destroy = true
  }
}

# aws_security_group_rule rather than the newer per-rule resources: the AWS
# emulator the lab and CI apply to loses descriptions of group-referenced rules
# in DescribeSecurityGroupRules, which would make every plan show drift.
resource "aws_security_group_rule" "from_group" {
  for_each = {
    for r in local.sg_rules : "${r.to}<-${r.from}:${r.port}" => r
  }
  type                     = "ingress"
  security_group_id        = aws_security_group.this[each.value.to].id
  source_security_group_id = aws_security_group.this[each.value.from].id
  protocol                 = "tcp"
  from_port                = each.value.port
  to_port                  = try(each.value.port_to, each.value.port)
  description              = each.value.desc
}

resource "aws_security_group_rule" "from_cidr" {
  for_each = {
    for r in local.cidr_rules : "${r.to}<-${r.cidr}:${r.port}" => r
  }
  type              = "ingress"
  security_group_id = aws_security_group.this[each.value.to].id
  cidr_blocks       = [each.value.cidr]
  protocol          = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = each.value.desc
}

# Egress: anything inside the VPC (the receiving group enforces ports) and
# HTTP/HTTPS out through the NAT for OS packages and artifact downloads.
resource "aws_security_group_rule" "egress_vpc" {
  for_each          = aws_security_group.this
  type              = "egress"
  security_group_id = each.value.id
  cidr_blocks       = [var.vpc_cidr]
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  description       = "Any traffic inside the VPC"
}

resource "aws_security_group_rule" "egress_web" {
  for_each = {
    for pair in setproduct(local.groups, [80, 443]) : "${pair[0]}:${pair[1]}" => { group = pair[0], port = pair[1] }
  }
  type              = "egress"
  security_group_id = aws_security_group.this[each.value.group].id
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "Package and artifact downloads through the NAT gateway"
}

resource "aws_security_group_rule" "egress_peer_kafka" {
  for_each          = toset(var.replication_peer_cidrs)
  type              = "egress"
  security_group_id = aws_security_group.this["kafka"].id
  cidr_blocks       = [each.value]
  protocol          = "tcp"
  from_port         = local.p.kafka_client
  to_port           = local.p.kafka_client
  description       = "MirrorMaker 2 reaches the peer region Kafka"
}
