variable "name" {
  description = "Name tag of the peering connection."
  type        = string
}

variable "vpc_id" {
  description = "This (requester) VPC, in the region of the default aws provider."
  type        = string
}

variable "vpc_cidr" {
  description = "This VPC's CIDR: the destination of the routes added to the peer's route tables."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR such as 10.20.0.0/16."
  }
}

variable "route_table_ids" {
  description = "This VPC's route tables that get a route to peer_cidr through the peering, keyed by a name known at plan time (e.g. the AZ index): those of the private and data subnets."
  type        = map(string)
  validation {
    condition     = length(var.route_table_ids) > 0
    error_message = "route_table_ids must name at least one route table: a peering without routes carries nothing."
  }
}

variable "peer_vpc_id" {
  description = "The peer (accepter) VPC, in peer_region (aws.peer provider)."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.peer_vpc_id))
    error_message = "peer_vpc_id must be a VPC id (vpc-...)."
  }
}

variable "peer_region" {
  description = "Region of the peer VPC; must be the region of the aws.peer provider."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.peer_region))
    error_message = "peer_region must be an AWS region code such as ap-northeast-2."
  }
}

variable "peer_cidr" {
  description = "The peer VPC's CIDR: the destination of the routes added to route_table_ids. Must not overlap vpc_cidr."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.peer_cidr))
    error_message = "peer_cidr must be an IPv4 CIDR such as 10.10.0.0/16."
  }
}

variable "peer_route_table_ids" {
  description = "The peer VPC's route tables that get a route to vpc_cidr through the peering, keyed by a name known at plan time (route table ids looked up by a data source are)."
  type        = map(string)
  validation {
    condition     = length(var.peer_route_table_ids) > 0
    error_message = "peer_route_table_ids must name at least one route table: without a way back the peering carries nothing."
  }
}

variable "allow_remote_vpc_dns_resolution" {
  description = "Let each side resolve the other's private DNS host names (ip-10-...compute.internal) to private addresses instead of public ones."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for the peering connection (both sides)."
  type        = map(string)
  default     = {}
}
