output "security_group_ids" {
  description = "Security group ID per role: bastion, kafka, hdfs, spark, monitoring, collector."
  value       = { for k, sg in aws_security_group.this : k => sg.id }
}

output "ingress_design" {
  description = "The intended ingress rules as (to, from group or CIDR, port range) tuples, for audits and tests."
  value = concat(
    [for r in local.sg_rules : { to = r.to, source = r.from, from_port = r.port, to_port = try(r.port_to, r.port) }],
    [for r in local.cidr_rules : { to = r.to, source = r.cidr, from_port = r.port, to_port = r.port }],
  )
}
