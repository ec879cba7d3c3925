data "aws_caller_identity" "current" {}
data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394:Only a default for labs and first trials: production tfvars pin availability_zones explicitly (README), which bypasses this lookup.
  state = "available"
}

locals {
  # The platform contract (repository root): environments, stacks (region, VPC
  # CIDR, peer), security groups, the inventory groups they hold and every port
  # with who may reach it. Ansible reads the same file, so the rules below open
  # exactly the ports the services use and both agree on the environment names.
  # scripts/fms_tools/fmsops/terraform.py stages it beside terraform/ for lab and test runs.
  platform = yamldecode(file("${path.module}/../../../platform.yml"))

  # This stack and its peer as the contract writes them; the lab environment
  # gives every stack addresses of its own (lab_vpc_cidr, RFC 2544).
  environment   = local.platform.environments[var.environment]
  lab_network   = try(local.environment.lab, false)
  stack         = local.platform.stacks[var.stack_role]
  peer_stack    = local.stack.peer == null ? null : local.platform.stacks[local.stack.peer]
  region        = coalesce(var.region, local.stack.region)
  vpc_cidr      = coalesce(var.vpc_cidr, local.lab_network ? local.stack.lab_vpc_cidr : local.stack.vpc_cidr)
  peer_vpc_cidr = var.peer_vpc_cidr != null ? var.peer_vpc_cidr : local.peer_stack == null ? null : local.lab_network ? local.peer_stack.lab_vpc_cidr : local.peer_stack.vpc_cidr
  peer_cidrs    = local.peer_vpc_cidr == null ? [] : [local.peer_vpc_cidr]
  peer_region   = coalesce(var.peer_region, try(local.peer_stack.region, null), local.region)

  # The VPC peering between the regions belongs to the standby stack's state
  # (platform.yml stacks.<name>.role): it is built after the active one, and the
  # link exists for it (MirrorMaker 2 in the standby pulls from the active Kafka).
  # The active stack holds nothing of it, so each stack keeps its own state and
  # its own backend region.
  peering = local.peer_stack != null && local.stack.role == "standby" && coalesce(var.enable_peering, true)

  name               = coalesce(var.name, "${var.project}-${var.environment}-${var.stack_role}")
  availability_zones = coalesce(var.availability_zones, slice(data.aws_availability_zones.available.names, 0, min(var.az_count, length(data.aws_availability_zones.available.names))))
  bucket_prefix      = coalesce(var.bucket_prefix, "${var.project}-${var.environment}-${data.aws_caller_identity.current.account_id}-${local.region}")
  tags               = { Stack = var.stack_role }
}

module "kms" {
  source = "../../modules/kms"
  name   = local.name
  tags   = local.tags
}

module "network" {
  source                  = "../../modules/network"
  name                    = local.name
  vpc_cidr                = local.vpc_cidr
  non_overlapping_cidrs   = concat(local.peer_cidrs, var.extra_non_overlapping_cidrs)
  availability_zones      = local.availability_zones
  single_nat_gateway      = var.single_nat_gateway
  flow_log_retention_days = var.flow_log_retention_days
  kms_key_arn             = module.kms.key_arn
  # EMR launches into private[0]: its v2 service policy requires the tag there.
  subnet_tier_tags = var.enable_emr ? { private = module.emr.managed_policy_tags } : {}
  tags             = local.tags
}

# The peer VPC, found in the peer's region by the tags its own stack gives it
# (Project, Env, Stack = the peer's name) and by the CIDR the contract gives it:
# no access to the other stack's state, no ids copied by hand. peer_vpc_id pins it.
data "aws_vpcs" "peer" {
  count    = local.peering && var.peer_vpc_id == null ? 1 : 0
  provider = aws.peer
  tags     = { Project = var.project, Env = var.environment, Stack = local.stack.peer }
  filter {
    name   = "cidr-block"
    values = [local.peer_vpc_cidr]
  }
  lifecycle {
    postcondition {
      condition     = length(self.ids) == 1
      error_message = "enable_peering: expected exactly one VPC tagged Project=${var.project}, Env=${var.environment}, Stack=${coalesce(local.stack.peer, "-")} with CIDR ${coalesce(local.peer_vpc_cidr, "-")} in ${local.peer_region}, found ${length(self.ids)}. Apply terraform/envs/${coalesce(local.stack.peer, "-")} first, set peer_vpc_id, or set enable_peering = false."
    }
  }
}

locals {
  peer_vpc_id = !local.peering ? null : coalesce(var.peer_vpc_id, try(data.aws_vpcs.peer[0].ids[0], null))
}

# The peer's route tables of its private and data subnets (the tiers its
# services sit in; the public tier holds only the bastion).
data "aws_subnets" "peer_private" {
  count    = local.peering ? 1 : 0
  provider = aws.peer
  filter {
    name   = "vpc-id"
    values = [local.peer_vpc_id]
  }
  filter {
    name   = "tag:Tier"
    values = ["private", "data"]
  }
}

data "aws_route_tables" "peer_private" {
  count    = local.peering ? 1 : 0
  provider = aws.peer
  vpc_id   = local.peer_vpc_id
  filter {
    name   = "association.subnet-id"
    values = data.aws_subnets.peer_private[0].ids
  }
}

module "peering" {
  source = "../../modules/peering"
  count  = local.peering ? 1 : 0
  providers = {
    aws      = aws
    aws.peer = aws.peer
  }
  name                 = "${local.name}-to-${local.stack.peer}"
  vpc_id               = module.network.vpc_id
  vpc_cidr             = module.network.vpc_cidr
  route_table_ids      = module.network.private_route_table_ids
  peer_vpc_id          = local.peer_vpc_id
  peer_region          = local.peer_region
  peer_cidr            = local.peer_vpc_cidr
  peer_route_table_ids = { for id in data.aws_route_tables.peer_private[0].ids : id => id }
  tags                 = local.tags
}

module "security" {
  source                   = "../../modules/security"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  vpc_cidr                 = module.network.vpc_cidr
  admin_cidrs              = var.admin_cidrs
  dashboard_cidrs          = var.dashboard_cidrs
  allow_world_admin_access = var.allow_world_admin_access
  replication_peer_cidrs   = local.peer_cidrs
  security_groups          = local.platform.security_groups
  cidr_classes             = local.platform.cidr_classes
  ports                    = local.platform.ports
  tags                     = local.tags
}

module "storage" {
  source        = "../../modules/storage"
  bucket_prefix = local.bucket_prefix
  kms_key_arn   = module.kms.key_arn
  force_destroy = var.lake_force_destroy
  replication   = var.lake_replication
  tags          = local.tags
}

# Vault-encrypted backups of the sites' secrets directories (ansible/secrets_backup.yml: the
# site CA's key and certificate, the generated passwords, the cluster ids). The bucket lives
# with the standby stack, in the DR region: a new control machine must be able to restore
# them and converge DR when the active region, and the control machine that served it, are gone.
locals {
  secrets_backup_bucket = coalesce(var.enable_secrets_backup_bucket, local.stack.role == "standby")
}

module "secrets_backup_bucket" {
  source      = "../../modules/s3_bucket"
  count       = local.secrets_backup_bucket ? 1 : 0
  name        = "${local.bucket_prefix}-secrets-backup"
  kms_key_arn = module.kms.key_arn
  access_log_target = {
    bucket = module.storage.access_log_delivery_target # waits for its log-delivery grant
    prefix = "secrets-backup/"
  }
  force_destroy = var.lake_force_destroy
  tags          = merge(local.tags, { Tier = "secrets-backup" })
}

module "iam" {
  source           = "../../modules/iam"
  name             = local.name
  role_families    = keys(local.platform.security_groups)
  lake_bucket_arns = module.storage.bucket_arns
  kms_key_arn      = module.kms.key_arn
  tags             = local.tags
}

module "compute" {
  source                 = "../../modules/compute"
  name                   = local.name
  environment            = var.environment
  production             = local.environment.production
  project                = var.project
  instance_groups        = var.instance_groups
  security_groups        = local.platform.security_groups
  subnet_ids             = module.network.subnet_ids
  security_group_ids     = module.security.security_group_ids
  instance_profile_names = module.iam.instance_profile_names
  ami_id                 = var.ami_id
  ami_owners             = var.ami_owners
  ami_name_pattern       = var.ami_name_pattern
  ssh_key_name           = var.ssh_key_name
  detailed_monitoring    = var.detailed_monitoring
  kms_key_arn            = module.kms.key_arn
  data_volume_tags       = module.snapshots.target_tags
  tags                   = local.tags
}

# Daily snapshots of the data volumes, kept 7 days (Data Lifecycle Manager, selected by tag).
module "snapshots" {
  source  = "../../modules/snapshots"
  enabled = var.enable_volume_snapshots
  name    = local.name
  tags    = local.tags
}

module "emr" {
  source              = "../../modules/emr"
  enabled             = var.enable_emr
  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_id           = module.network.subnet_ids["private"][0]
  core_instance_count = var.emr_core_instance_count
  log_bucket          = module.storage.access_log_bucket
  kms_key_arn         = module.kms.key_arn
  # In-transit TLS (Spark, Hadoop) with these PEM certificates; required with enable_emr.
  in_transit_certificate_zip = var.emr_in_transit_certificate_zip
  tags                       = local.tags
}
