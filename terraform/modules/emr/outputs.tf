output "cluster_id" {
  description = "EMR cluster ID (null when disabled)."
  value       = try(aws_emr_cluster.this[0].id, null)
}

output "master_public_dns" {
  description = "DNS name of the primary node (private in a private subnet; null when disabled)."
  value       = try(aws_emr_cluster.this[0].master_public_dns, null)
}

output "security_configuration" {
  description = "Name of the EMR security configuration (null when disabled)."
  value       = try(aws_emr_security_configuration.this[0].name, null)
}

output "managed_policy_tags" {
  description = "Tag AmazonEMRServicePolicy_v2 requires on resources EMR uses but does not create (put it on the cluster's subnet)."
  value       = local.managed_policy_tags
}
