output "instances" {
  description = "Every instance: name, role, inventory groups, private IP, AZ, subnet and ID."
  value = {
    for k, inst in aws_instance.this : inst.tags["Name"] => {
      id         = inst.id
      role       = local.instances[k].role
      groups     = local.instances[k].groups
      private_ip = inst.private_ip
      az         = inst.availability_zone
      subnet_id  = inst.subnet_id
      data_disk  = local.instances[k].data_gb > 0 ? "/dev/sdf" : null
    }
  }
}

output "inventory_groups" {
  description = "Inventory group => host names, matching what the aws_ec2 inventory plugin builds from the Roles tag."
  value = {
    for group in distinct(flatten([for v in values(local.instances) : v.groups])) : group => sort([
      for k, v in local.instances : "${var.name}-${k}" if contains(v.groups, group)
    ])
  }
}

output "bastion_public_ips" {
  description = "Public (Elastic) IPs of the bastion hosts."
  value       = [for e in aws_eip.bastion : e.public_ip]
}

output "kafka_controller_count" {
  description = "Number of KRaft controllers (dedicated or combined)."
  value       = local.controller_count
}
