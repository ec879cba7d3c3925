variable "enabled" {
  description = "Create the policy. false on the lab: the AWS emulator has no Data Lifecycle Manager API (the volumes are tagged all the same)."
  type        = bool
  default     = true
}

variable "name" {
  description = "Name prefix of the lifecycle policy and its IAM role."
  type        = string
  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{2,40}$", var.name))
    error_message = "name may contain letters, digits, '_' and '-' only (2-40 characters)."
  }
}

variable "target_tags" {
  description = "The tags that select the volumes to snapshot (a volume with any one of them is taken). The compute module puts these on every data volume."
  type        = map(string)
  default     = { Snapshots = "daily" }
  validation {
    condition     = length(var.target_tags) > 0
    error_message = "target_tags must name at least one tag, or the policy would select no volume."
  }
}

variable "daily_at" {
  description = "UTC time of the daily snapshot, HH:MM (AWS starts it within the hour after)."
  type        = string
  default     = "18:00"
  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.daily_at))
    error_message = "daily_at must be a UTC time HH:MM, e.g. \"18:00\"."
  }
}

variable "retain_count" {
  description = "How many daily snapshots of each volume are kept (the design documents: 7 days)."
  type        = number
  default     = 7
  validation {
    condition     = var.retain_count >= 1 && var.retain_count <= 1000 && floor(var.retain_count) == var.retain_count
    error_message = "retain_count must be a whole number between 1 and 1000."
  }
}

variable "tags" {
  description = "Tags added to every resource (and to each snapshot, with the volume's own tags)."
  type        = map(string)
  default     = {}
}
