variable "name" {
  description = "Name prefix for the security groups."
  type        = string
}

variable "vpc_id" {
  description = "VPC the security groups belong to."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR; every role may send to it (service ports are enforced by the receiving group)."
  type        = string
}

variable "admin_cidrs" {
  description = "CIDRs allowed to SSH to the bastion. 0.0.0.0/0 (or ::/0) is refused unless allow_world_admin_access is true."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrnetmask(c))])
    error_message = "admin_cidrs must contain valid IPv4 CIDRs such as 203.0.113.10/32."
  }
  validation {
    condition     = var.allow_world_admin_access || !anytrue([for c in var.admin_cidrs : endswith(c, "/0")])
    error_message = "admin_cidrs opens SSH to the whole internet (a /0 block). Use your office or VPN range (e.g. 203.0.113.0/24); if you really mean it, also set allow_world_admin_access = true."
  }
}

variable "allow_world_admin_access" {
  description = "Explicit opt-in to allow a /0 in admin_cidrs. Leave false."
  type        = bool
  default     = false
}

variable "dashboard_cidrs" {
  description = "CIDRs (besides the bastion) allowed to reach Grafana, Prometheus and Alertmanager, e.g. a VPN range. /0 needs allow_world_admin_access."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.dashboard_cidrs : can(cidrnetmask(c))])
    error_message = "dashboard_cidrs must contain valid IPv4 CIDRs."
  }
  validation {
    condition     = var.allow_world_admin_access || !anytrue([for c in var.dashboard_cidrs : endswith(c, "/0")])
    error_message = "dashboard_cidrs opens the dashboards to the whole internet. Use a VPN/office range, or set allow_world_admin_access = true explicitly."
  }
}

variable "replication_peer_cidrs" {
  description = "CIDRs of the peer region's VPC: MirrorMaker 2 there consumes from this region's Kafka client listener."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.replication_peer_cidrs : can(cidrnetmask(c)) && !endswith(c, "/0")])
    error_message = "replication_peer_cidrs must be valid, non-/0 IPv4 CIDRs (the peer VPC)."
  }
}

variable "security_groups" {
  description = "Security groups to create, keyed by name: what runs there and the inventory groups (compute roles) whose instances get the group. Pass `security_groups` of the platform contract (platform.yml)."
  type = map(object({
    description      = string
    inventory_groups = list(string)
    subnet_tier      = optional(string) # used by the compute module
  }))
  validation {
    condition     = length(var.security_groups) > 0 && alltrue([for k, g in var.security_groups : can(regex("^[a-z][a-z0-9_]*$", k)) && length(g.inventory_groups) > 0])
    error_message = "security_groups must name at least one group (lower-case names such as kafka), each holding at least one inventory group."
  }
  validation {
    condition     = length(flatten([for g in var.security_groups : g.inventory_groups])) == length(distinct(flatten([for g in var.security_groups : g.inventory_groups])))
    error_message = "An inventory group may belong to one security group only (an instance gets exactly one)."
  }
}

variable "cidr_classes" {
  description = "Sources outside the VPC a port may be opened to, keyed by class (admin, dashboard, peer); `variable` names the module variable holding the class's CIDRs (admin_cidrs, dashboard_cidrs or replication_peer_cidrs). Pass `cidr_classes` of the platform contract."
  type = map(object({
    description = string
    variable    = string
  }))
  validation {
    condition     = alltrue([for c in var.cidr_classes : contains(["admin_cidrs", "dashboard_cidrs", "replication_peer_cidrs"], c.variable)])
    error_message = "cidr_classes[*].variable must be one of admin_cidrs, dashboard_cidrs, replication_peer_cidrs."
  }
}

variable "ports" {
  description = "Every listener and exporter port of the platform and who may reach it, keyed by name. Pass `ports` of the platform contract (platform.yml); each ingress entry opens `port`..`port_to` on the `to` groups from the `from` groups or CIDR classes. Entries with `within` are covered by another entry's range and create no rule."
  type = map(object({
    port        = number
    port_to     = optional(number)
    protocols   = optional(list(string), ["tcp"])
    description = string
    within      = optional(string)
    ingress = optional(list(object({
      to          = list(string)
      from        = list(string)
      description = string
    })), [])
  }))
  validation {
    condition     = alltrue([for p in var.ports : p.port >= 1 && coalesce(p.port_to, p.port) <= 65535 && coalesce(p.port_to, p.port) >= p.port && floor(p.port) == p.port])
    error_message = "Every port must be an integer in 1-65535, and port_to (if set) at least port."
  }
  validation {
    condition     = alltrue([for p in var.ports : length(p.protocols) > 0 && alltrue([for proto in p.protocols : contains(["tcp", "udp"], proto)])])
    error_message = "protocols may contain only tcp and udp."
  }
  validation {
    condition     = alltrue(flatten([for p in var.ports : [for i in p.ingress : [for g in i.to : contains(keys(var.security_groups), g)]]]))
    error_message = "ingress[*].to must name security groups of var.security_groups."
  }
  validation {
    condition     = alltrue(flatten([for p in var.ports : [for i in p.ingress : [for s in i.from : contains(concat(keys(var.security_groups), keys(var.cidr_classes)), s)]]]))
    error_message = "ingress[*].from must name security groups of var.security_groups or classes of var.cidr_classes."
  }
  validation {
    condition     = alltrue(flatten([for p in var.ports : [for i in p.ingress : length(i.to) > 0 && length(i.from) > 0 && can(regex("^[a-zA-Z0-9. _\\-:/()#,@\\[\\]+=&;{}!$*]{1,255}$", i.description))]]))
    error_message = "Each ingress entry needs to, from and a description AWS accepts (letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*)."
  }
  validation {
    condition = alltrue([
      for p in var.ports : p.within == null ? true : (
        contains(keys(var.ports), p.within) && length(p.ingress) == 0
        && p.port >= try(var.ports[p.within].port, 0) && coalesce(p.port_to, p.port) <= try(coalesce(var.ports[p.within].port_to, var.ports[p.within].port), 0)
      )
    ])
    error_message = "A port with `within` must lie inside the named port range and have no ingress of its own."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
