output "instance_profile_names" {
  description = "Instance profile name per role."
  value       = { for k, p in aws_iam_instance_profile.this : k => p.name }
}

output "role_arns" {
  description = "IAM role ARN per role."
  value       = { for k, r in aws_iam_role.this : k => r.arn }
}

output "lake_access" {
  description = "Which roles may read and write which lake tiers."
  value       = local.lake_access
}
