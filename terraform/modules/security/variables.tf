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

variable "ports" {
  description = "Service ports. Override only if the Ansible group_vars use different ports."
  type = object({
    ssh                  = optional(number, 22)
    kafka_client         = optional(number, 9092)
    kafka_controller     = optional(number, 9093)
    kafka_internal       = optional(number, 9094)
    jmx_exporter         = optional(number, 7071)
    node_exporter        = optional(number, 9100)
    hdfs_namenode_rpc    = optional(number, 8020)
    hdfs_namenode_http   = optional(number, 9870)
    hdfs_datanode_data   = optional(number, 9866)
    hdfs_datanode_ipc    = optional(number, 9867)
    hdfs_datanode_http   = optional(number, 9864)
    spark_master         = optional(number, 7077)
    spark_master_ui      = optional(number, 8080)
    spark_worker_ui      = optional(number, 8081)
    spark_rpc_range_from = optional(number, 7078)
    spark_rpc_range_to   = optional(number, 7099)
    spark_driver_ui      = optional(number, 4040)
    streaming_metrics    = optional(number, 9311)
    collector_metrics    = optional(number, 9310)
    prometheus           = optional(number, 9090)
    alertmanager         = optional(number, 9093)
    alertmanager_cluster = optional(number, 9094)
    grafana              = optional(number, 3000)
  })
  default = {}
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
