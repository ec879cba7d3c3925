variable "name" {
  description = "Name prefix for every resource (e.g. fms-prod)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/16 to /22). Subnets are carved from it with subnet_newbits."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 22
    error_message = "vpc_cidr must be a valid IPv4 CIDR between /16 and /22, e.g. 10.10.0.0/16."
  }
  validation {
    condition     = cidrhost(var.vpc_cidr, 0) == split("/", var.vpc_cidr)[0]
    error_message = "vpc_cidr must be a network address (host bits zero): use the network address of the block, e.g. 10.10.0.0/16 rather than 10.10.1.0/16."
  }
}

variable "non_overlapping_cidrs" {
  description = "CIDRs the VPC must not overlap: the peer region's VPC, on-premises ranges, the lab machine's networks. Checked at plan time."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.non_overlapping_cidrs : can(cidrnetmask(c))])
    error_message = "non_overlapping_cidrs must contain valid IPv4 CIDRs."
  }
  validation {
    # Two ranges overlap unless one ends before the other starts (addresses as integers).
    condition = alltrue([
      for c in var.non_overlapping_cidrs : (
        sum([for i, o in split(".", cidrhost(c, 0)) : tonumber(o) * pow(256, 3 - i)]) + pow(2, 32 - tonumber(split("/", c)[1])) - 1
        < sum([for i, o in split(".", cidrhost(var.vpc_cidr, 0)) : tonumber(o) * pow(256, 3 - i)])
        ||
        sum([for i, o in split(".", cidrhost(var.vpc_cidr, 0)) : tonumber(o) * pow(256, 3 - i)]) + pow(2, 32 - tonumber(split("/", var.vpc_cidr)[1])) - 1
        < sum([for i, o in split(".", cidrhost(c, 0)) : tonumber(o) * pow(256, 3 - i)])
      )
    ])
    error_message = "vpc_cidr overlaps one of non_overlapping_cidrs (e.g. the other region's VPC). Choose a vpc_cidr that shares no address with them, e.g. 10.10.0.0/16 for primary and 10.20.0.0/16 for DR."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread subnets over, at least 2 (3 recommended for production)."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) >= 2 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must list at least 2 distinct zones: a single-AZ platform loses Kafka and HDFS quorum with one zone. Add a second zone, e.g. [\"ap-northeast-2a\", \"ap-northeast-2c\"]."
  }
  validation {
    condition     = length(var.availability_zones) <= 8
    error_message = "availability_zones supports at most 8 zones."
  }
}

variable "subnet_newbits" {
  description = "Bits added to the VPC prefix for each subnet (8 turns a /16 into /24 subnets)."
  type        = number
  default     = 8
  validation {
    condition     = var.subnet_newbits >= 2 && var.subnet_newbits <= 10
    error_message = "subnet_newbits must be between 2 and 10."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all AZs (cheaper, not zone-redundant). Default: one NAT per AZ."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "CloudWatch retention of VPC flow logs, in days."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (e.g. 30, 90, 365)."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log group."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "subnet_tier_tags" {
  description = "Extra tags for the subnets of one tier (public, private, data), e.g. the tag EMR's v2 managed policies require on the subnet a cluster launches in."
  type        = map(map(string))
  default     = {}
  validation {
    condition     = alltrue([for tier in keys(var.subnet_tier_tags) : contains(["public", "private", "data"], tier)])
    error_message = "subnet_tier_tags keys must be subnet tiers: public, private or data."
  }
}
