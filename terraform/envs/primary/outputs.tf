output "region" {
  description = "Region of this stack."
  value       = local.region
}

output "stack_role" {
  description = "primary or dr."
  value       = var.stack_role
}

output "name" {
  description = "Name prefix used by every resource."
  value       = local.name
}

output "vpc_id" {
  description = "VPC ID."
  value       = module.network.vpc_id
}

output "vpc_cidr" {
  description = "VPC CIDR (give it to the other stack as peer_vpc_cidr)."
  value       = module.network.vpc_cidr
}

output "availability_zones" {
  description = "Zones in use."
  value       = module.network.availability_zones
}

output "subnet_cidrs" {
  description = "Subnet CIDRs per tier and AZ."
  value       = module.network.subnet_cidrs
}

output "instances" {
  description = "Every instance with role, inventory groups and private IP (feeds Ansible and the lab)."
  value       = module.compute.instances
}

output "inventory_groups" {
  description = "Inventory group => host names; the aws_ec2 plugin builds the same groups from the Roles tag."
  value       = module.compute.inventory_groups
}

output "bastion_public_ips" {
  description = "Bastion Elastic IPs (Ansible's ProxyJump)."
  value       = module.compute.bastion_public_ips
}

output "security_group_ids" {
  description = "Security group per role family."
  value       = module.security.security_group_ids
}

output "lake_bucket_names" {
  description = "Data-lake bucket per tier (archive job and Spark s3a configuration)."
  value       = module.storage.bucket_names
}

output "lake_bucket_arns" {
  description = "Data-lake bucket ARNs per tier (the primary stack's lake_replication.destination_bucket_arns)."
  value       = module.storage.bucket_arns
}

output "kms_key_arn" {
  description = "Platform KMS key (the primary stack's lake_replication.destination_kms_key_arn)."
  value       = module.kms.key_arn
}

output "secrets_backup_bucket" {
  description = "Bucket of the vault-encrypted secrets backups, in this (the standby's) region: give it to ansible/secrets_backup.yml and secrets_restore.yml as fms_secrets_backup_bucket. null where enable_secrets_backup_bucket is off (the active stack)."
  value       = one(module.secrets_backup_bucket[*].id)
}

output "emr_cluster_id" {
  description = "EMR cluster ID when enable_emr."
  value       = module.emr.cluster_id
}

output "security_ingress_design" {
  description = "Every intended ingress rule (to role, from role or CIDR, ports), for audits and the emulator test."
  value       = module.security.ingress_design
}

output "peering" {
  description = "The VPC peering to the peer stack when this stack holds it (the standby, enable_peering), else null: connection id, status, this and the peer VPC's CIDR, the peer's stack, region and VPC. The lab routes between the two stacks' bridges only when this is set."
  value = local.peering ? {
    id          = module.peering[0].id
    status      = module.peering[0].accept_status
    vpc_cidr    = module.network.vpc_cidr
    peer_cidr   = module.peering[0].peer_cidr
    peer_stack  = local.stack.peer
    peer_region = local.peer_region
    peer_vpc_id = local.peer_vpc_id
  } : null
}
