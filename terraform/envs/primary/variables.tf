# Variables of the platform stack. envs/dr symlinks this configuration; each env
# differs only in its terraform.tfvars (stack_role). Environment names, regions
# and VPC CIDRs are written in platform.yml (environments, stacks): the defaults
# below come from there (main.tf, locals).

variable "stack_role" {
  description = "Which stack of platform.yml (stacks) this is: primary (serves traffic, replicates to DR) or dr (warm standby). Selects the region, the VPC CIDR and the peer."
  type        = string
  validation {
    condition     = contains(keys(local.platform.stacks), var.stack_role)
    error_message = "stack_role must be one of the stacks in platform.yml: ${join(", ", keys(local.platform.stacks))} (got \"${var.stack_role}\")."
  }
}

variable "region" {
  description = "AWS region of this stack; null (default) takes stacks.<stack_role>.region from platform.yml."
  type        = string
  default     = null
  validation {
    condition     = var.region == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as ap-northeast-2."
  }
}

variable "project" {
  description = "Project tag and name prefix."
  type        = string
  default     = "fms"
}

variable "environment" {
  description = "One of the environments in platform.yml (production, staging, dev, test, lab). Those marked production there enforce the quorum rules (>= 3 odd KRaft controllers, >= 3 brokers)."
  type        = string
  default     = "production"
  validation {
    condition     = contains(keys(local.platform.environments), var.environment)
    error_message = "environment must be one of the environments in platform.yml: ${join(", ", keys(local.platform.environments))} (got \"${var.environment}\")."
  }
}

variable "name" {
  description = "Name prefix of every resource; null means <project>-<environment>-<stack_role>."
  type        = string
  default     = null
}

variable "vpc_cidr" {
  description = "VPC CIDR; null (default) takes stacks.<stack_role>.vpc_cidr from platform.yml (lab_vpc_cidr in the lab environment). Must not overlap the peer's."
  type        = string
  default     = null
}

variable "peer_vpc_cidr" {
  description = "VPC CIDR of the other region's stack: checked for overlap and allowed to reach Kafka for MirrorMaker 2. null (default) takes the CIDR of the stack's peer in platform.yml (none if it has no peer)."
  type        = string
  default     = null
}

variable "peer_region" {
  description = "Region of the other region's stack; null (default) takes stacks.<peer>.region from platform.yml."
  type        = string
  default     = null
  validation {
    condition     = var.peer_region == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.peer_region))
    error_message = "peer_region must be an AWS region code such as ap-northeast-2."
  }
}

variable "enable_peering" {
  description = "VPC peering to the peer stack (requested by the standby stack of platform.yml, accepted in the peer's region, routes both ways on the private and data subnets' route tables). null (default) = true when this stack is a standby with a peer; false removes the peering and every route through it. The active stack ignores it (it holds nothing of the peering)."
  type        = bool
  default     = null
}

variable "peer_vpc_id" {
  description = "With the peering: the peer VPC's id. null (default) looks it up in the peer's region by the tags its stack gives it (Project, Env, Stack) and its CIDR (peer_vpc_cidr)."
  type        = string
  default     = null
  validation {
    condition     = var.peer_vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.peer_vpc_id))
    error_message = "peer_vpc_id must be a VPC id (vpc-...)."
  }
}

variable "extra_non_overlapping_cidrs" {
  description = "Further CIDRs the VPC must not overlap (on-premises networks, VPNs)."
  type        = list(string)
  default     = []
}

variable "az_count" {
  description = "Number of availability zones to use when availability_zones is null (at least 2; 3 recommended)."
  type        = number
  default     = 3
  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2: one zone cannot keep Kafka and HDFS available through a zone failure."
  }
}

variable "availability_zones" {
  description = "Explicit availability zones (overrides az_count), at least 2."
  type        = list(string)
  default     = null
  validation {
    condition     = var.availability_zones == null ? true : length(var.availability_zones) >= 2
    error_message = "availability_zones must list at least 2 zones, e.g. [\"ap-northeast-2a\", \"ap-northeast-2c\"]."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ (cheaper; loses egress if that zone fails)."
  type        = bool
  default     = false
}

variable "admin_cidrs" {
  description = "Networks allowed to SSH to the bastion."
  type        = list(string)
  default     = []
}

variable "dashboard_cidrs" {
  description = "Networks allowed to reach Grafana/Prometheus/Alertmanager directly (otherwise tunnel through the bastion)."
  type        = list(string)
  default     = []
}

variable "allow_world_admin_access" {
  description = "Explicit opt-in for a /0 in admin_cidrs or dashboard_cidrs. Leave false."
  type        = bool
  default     = false
}

variable "instance_groups" {
  description = "Instances per role (see the compute module). Defaults are a production-sized platform."
  type = map(object({
    count               = number
    instance_type       = string
    groups              = optional(list(string))
    subnet_tier         = optional(string)
    root_volume_size_gb = optional(number, 30)
    data_volume_size_gb = optional(number, 0)
    data_volume_iops    = optional(number, 3000)
  }))
  default = {
    bastion          = { count = 1, instance_type = "t3.small" }
    kafka_controller = { count = 3, instance_type = "m6i.large", data_volume_size_gb = 50 }
    kafka            = { count = 3, instance_type = "r6i.xlarge", data_volume_size_gb = 1000 }
    hdfs_namenode    = { count = 1, instance_type = "r6i.xlarge", data_volume_size_gb = 200 }
    hdfs_datanode    = { count = 3, instance_type = "d3.xlarge", data_volume_size_gb = 4000 }
    spark_master     = { count = 1, instance_type = "m6i.large" }
    spark_worker     = { count = 3, instance_type = "r6i.2xlarge", data_volume_size_gb = 200 }
    monitoring       = { count = 1, instance_type = "m6i.large", data_volume_size_gb = 200 }
    collector        = { count = 2, instance_type = "c6i.large" }
  }
}

variable "ami_id" {
  description = "AMI for every instance; null looks up the newest image matching ami_name_pattern from ami_owners."
  type        = string
  default     = null
}

variable "ami_owners" {
  description = "AMI owners searched when ami_id is null (Debian's official account by default)."
  type        = list(string)
  default     = ["136693071363"]
}

variable "ami_name_pattern" {
  description = "AMI name pattern searched when ami_id is null."
  type        = string
  default     = "debian-12-amd64-*"
}

variable "ssh_key_name" {
  description = "Existing EC2 key pair for the admin user; null installs none (use SSM or bake keys)."
  type        = string
  default     = null
}

variable "detailed_monitoring" {
  description = "EC2 detailed monitoring (1-minute CloudWatch metrics)."
  type        = bool
  default     = true
}

variable "bucket_prefix" {
  description = "Prefix of the lake bucket names; null means <project>-<environment>-<account id>-<region>."
  type        = string
  default     = null
}

variable "lake_force_destroy" {
  description = "Let terraform destroy non-empty lake (and secrets backup) buckets. Only for labs and tests."
  type        = bool
  default     = false
}

variable "enable_secrets_backup_bucket" {
  description = "S3 bucket for the vault-encrypted backups of the sites' secrets directories (ansible/secrets_backup.yml, output secrets_backup_bucket): versioned, SSE-KMS with this stack's key, public access blocked, access-logged. null (default) = true on the standby stack of platform.yml (the DR region, which must outlive the active one), false on the active one; false removes it (refused while it holds backups, unless lake_force_destroy)."
  type        = bool
  default     = null
  validation {
    condition     = !(coalesce(var.enable_secrets_backup_bucket, false) && try(local.platform.stacks[var.stack_role].role, "") != "standby")
    error_message = "enable_secrets_backup_bucket: the secrets backups belong to the standby stack (platform.yml stacks.<name>.role = standby, the DR region); a bucket in the active region would be lost with the secrets it protects. Leave it null here and apply the standby stack."
  }
}

variable "lake_replication" {
  description = "Replicate the lake to the DR region (primary stack only): the DR stack's lake_bucket_arns and kms_key_arn outputs."
  type = object({
    enabled                 = bool
    destination_bucket_arns = optional(map(string), {})
    destination_kms_key_arn = optional(string)
  })
  default = { enabled = false }
  validation {
    condition     = !(var.lake_replication.enabled && var.stack_role == "dr")
    error_message = "lake_replication is configured on the primary stack (the source); the DR stack is its destination."
  }
}

variable "flow_log_retention_days" {
  description = "Retention of VPC flow logs in CloudWatch, in days."
  type        = number
  default     = 365
}

variable "enable_volume_snapshots" {
  description = "Daily EBS snapshots of the data volumes, kept 7 days (modules/snapshots: a Data Lifecycle Manager policy). The lab sets false: the AWS emulator has no Data Lifecycle Manager API."
  type        = bool
  default     = true
}

variable "enable_emr" {
  description = "Also create an EMR cluster (Spark + Hadoop) as an alternative Spark runtime."
  type        = bool
  default     = false
}

variable "emr_core_instance_count" {
  description = "Core nodes of the optional EMR cluster."
  type        = number
  default     = 3
}

variable "emr_in_transit_certificate_zip" {
  description = "With enable_emr: S3 URL (s3://bucket/key.zip) of the PEM certificates for EMR's in-transit encryption (privateKey.pem, certificateChain.pem, trustedCertificates.pem; see modules/emr in_transit_certificate_zip and the README)."
  type        = string
  default     = null
}

variable "aws_endpoint_url" {
  description = "Send every AWS API call to this endpoint (the lab's AWS emulator). null for real AWS."
  type        = string
  default     = null
  validation {
    condition     = var.aws_endpoint_url == null ? true : can(regex("^https?://", var.aws_endpoint_url))
    error_message = "aws_endpoint_url must be an http(s) URL such as http://127.0.0.1:5000."
  }
}
