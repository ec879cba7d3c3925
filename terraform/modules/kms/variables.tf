variable "name" {
  description = "Name prefix; the key's alias becomes alias/<name>."
  type        = string
  validation {
    condition     = can(regex("^[a-zA-Z0-9/_-]{2,200}$", var.name))
    error_message = "name may contain letters, digits, '/', '_' and '-' only."
  }
}

variable "deletion_window_days" {
  description = "Waiting period before a scheduled key deletion completes (7-30 days)."
  type        = number
  default     = 30
  validation {
    condition     = var.deletion_window_days >= 7 && var.deletion_window_days <= 30
    error_message = "deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
