output "security_group_ids" {
  description = "Security group ID per group of var.security_groups (bastion, kafka, hdfs, spark, monitoring, collector)."
  value       = { for k, sg in aws_security_group.this : k => sg.id }
}

output "ingress_design" {
  description = "The intended ingress rules as (to, from group or CIDR, protocol, port range, rule key, contract port name) objects, expanded from var.ports: for audits and tests."
  value = concat(
    [for k, r in local.sg_rules : { key = k, port_name = r.name, to = r.to, source = r.from, protocol = r.protocol, from_port = r.port, to_port = r.port_to }],
    [for k, r in local.cidr_rules : { key = k, port_name = r.name, to = r.to, source = r.cidr, protocol = r.protocol, from_port = r.port, to_port = r.port_to }],
  )
}
