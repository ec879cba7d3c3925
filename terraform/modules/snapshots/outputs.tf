output "policy_id" {
  description = "ID of the data volume lifecycle policy (null when disabled)."
  value       = one(aws_dlm_lifecycle_policy.data_volumes[*].id)
}

output "role_arn" {
  description = "ARN of the IAM role the policy runs as (null when disabled)."
  value       = one(aws_iam_role.dlm[*].arn)
}

output "target_tags" {
  description = "The tags that select the volumes: the compute module puts them on every data volume."
  value       = var.target_tags
}
