variable "name" {
  description = "Name prefix; instances are named <name>-<group>-<n> and that name becomes their hostname."
  type        = string
}

variable "environment" {
  description = "Deployment environment, the Env tag (the env root checks it against platform.yml environments)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9]*$", var.environment))
    error_message = "environment must be a lower-case name such as production or lab."
  }
}

variable "production" {
  description = "Production rules apply (platform.yml environments.<environment>.production): >= 3 KRaft controllers and >= 3 brokers."
  type        = bool
}

variable "project" {
  description = "Value of the Project tag."
  type        = string
  default     = "fms"
}

variable "security_groups" {
  description = "Role families of the platform contract (platform.yml `security_groups`): per family the roles (inventory groups) it holds and their default subnet tier. A role's instances get the family's security group and instance profile."
  type = map(object({
    inventory_groups = list(string)
    subnet_tier      = string
  }))
  validation {
    condition     = alltrue([for g in values(var.security_groups) : length(g.inventory_groups) > 0 && contains(["public", "private", "data"], g.subnet_tier)])
    error_message = "Each family needs at least one inventory group and a subnet_tier of public, private or data."
  }
  validation {
    condition     = length(flatten(values(var.security_groups)[*].inventory_groups)) == length(distinct(flatten(values(var.security_groups)[*].inventory_groups)))
    error_message = "A role (inventory group) may belong to one family only."
  }
}

variable "instance_groups" {
  description = <<-EOT
    Instances per role, keyed by role: an inventory group of var.security_groups (bastion,
    kafka, kafka_controller, hdfs_namenode, hdfs_datanode, spark_master, spark_worker,
    monitoring, collector). `groups` lists the inventory groups the instances join (default:
    the role itself) — e.g. KRaft combined mode puts brokers in ["kafka", "kafka_controller"].
    `subnet_tier` defaults to the family's (platform.yml): public for the bastion, data for
    Kafka and HDFS, private for the rest.
  EOT
  type = map(object({
    count               = number
    instance_type       = string
    groups              = optional(list(string))
    subnet_tier         = optional(string)
    root_volume_size_gb = optional(number, 30)
    data_volume_size_gb = optional(number, 0)
    data_volume_iops    = optional(number, 3000)
  }))
  validation {
    condition     = alltrue([for k in keys(var.instance_groups) : contains(flatten(values(var.security_groups)[*].inventory_groups), k)])
    error_message = "instance_groups keys must be roles of var.security_groups (platform.yml): ${join(", ", flatten(values(var.security_groups)[*].inventory_groups))}."
  }
  validation {
    condition     = alltrue([for g in values(var.instance_groups) : g.count >= 0 && g.count <= 50 && floor(g.count) == g.count])
    error_message = "Each instance group count must be a whole number between 0 and 50."
  }
  validation {
    condition     = alltrue([for g in values(var.instance_groups) : g.subnet_tier == null || contains(["public", "private", "data"], coalesce(g.subnet_tier, "x"))])
    error_message = "subnet_tier must be public, private or data."
  }
  validation {
    condition     = alltrue([for g in values(var.instance_groups) : g.root_volume_size_gb >= 8 && (g.data_volume_size_gb == 0 || g.data_volume_size_gb >= 10)])
    error_message = "root_volume_size_gb must be >= 8 and data_volume_size_gb either 0 (none) or >= 10."
  }
  validation {
    condition     = sum(concat([0], [for role, g in var.instance_groups : g.count if contains(coalesce(g.groups, [role]), "kafka_controller")])) % 2 == 1
    error_message = "The KRaft controller quorum needs an odd number of controllers (found ${sum(concat([0], [for role, g in var.instance_groups : g.count if contains(coalesce(g.groups, [role]), "kafka_controller")]))}): an even count tolerates no more failures than one fewer. Set instance_groups.kafka_controller.count (or the kafka group in combined mode) to 1, 3 or 5."
  }
  validation {
    condition     = !var.production || sum(concat([0], [for role, g in var.instance_groups : g.count if contains(coalesce(g.groups, [role]), "kafka_controller")])) >= 3
    error_message = "Production needs at least 3 KRaft controllers to survive one controller loss (found ${sum(concat([0], [for role, g in var.instance_groups : g.count if contains(coalesce(g.groups, [role]), "kafka_controller")]))}). Set instance_groups.kafka_controller.count = 3."
  }
  validation {
    condition     = !var.production || try(var.instance_groups.kafka.count, 0) >= 3
    error_message = "Production needs at least 3 Kafka brokers for replication factor 3 with min.insync.replicas 2."
  }
}

variable "subnet_ids" {
  description = "Subnet IDs per tier (public, private, data), one per AZ: output subnet_ids of the network module."
  type        = map(list(string))
  validation {
    condition     = alltrue([for t in ["public", "private", "data"] : length(lookup(var.subnet_ids, t, [])) >= 2])
    error_message = "subnet_ids needs at least 2 subnets (AZs) in each of the public, private and data tiers."
  }
}

variable "security_group_ids" {
  description = "Security group ID per role family: bastion, kafka, hdfs, spark, monitoring, collector."
  type        = map(string)
}

variable "instance_profile_names" {
  description = "IAM instance profile per role family: bastion, kafka, hdfs, spark, monitoring, collector."
  type        = map(string)
}

variable "ami_id" {
  description = "AMI for every instance. null looks up the newest official Debian 12 (amd64) image."
  type        = string
  default     = null
  validation {
    condition     = var.ami_id == null ? true : can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "ami_owners" {
  description = "Owners searched when ami_id is null. Default: Debian's official AWS account."
  type        = list(string)
  default     = ["136693071363"]
}

variable "ami_name_pattern" {
  description = "Name pattern of the AMI looked up when ami_id is null."
  type        = string
  default     = "debian-12-amd64-*"
}

variable "ssh_key_name" {
  description = "EC2 key pair installed for the admin user (Ansible connects with it through the bastion). null installs none."
  type        = string
  default     = null
}

variable "detailed_monitoring" {
  description = "EC2 detailed (1-minute) CloudWatch monitoring. The lab turns it off: its emulator lacks the API."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "KMS key encrypting root and data volumes."
  type        = string
}

variable "data_volume_tags" {
  description = "Extra tags of every data volume, e.g. the tags the snapshots module's lifecycle policy selects volumes by."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
