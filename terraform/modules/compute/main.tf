locals {
  # Which security group / instance profile family a role belongs to, and the
  # subnet tier it defaults to: from the platform contract (platform.yml
  # security_groups), the file Ansible's inventory groups come from too.
  family       = merge([for sg, g in var.security_groups : { for role in g.inventory_groups : role => sg }]...)
  default_tier = { for role, sg in local.family : role => var.security_groups[sg].subnet_tier }

  # Flatten to one entry per instance. Instance i of a group lands in AZ
  # i mod N, so every group with >= N members covers every zone.
  # Keys (and so Name tags and hostnames) use dashes: hdfs_namenode -> hdfs-namenode-1.
  instances = merge([
    for role, g in var.instance_groups : {
      for i in range(g.count) : "${replace(role, "_", "-")}-${i + 1}" => {
        role      = role
        index     = i
        groups    = coalesce(g.groups, [role])
        tier      = coalesce(g.subnet_tier, local.default_tier[role])
        subnet_ix = i % length(var.subnet_ids[coalesce(g.subnet_tier, local.default_tier[role])])
        type      = g.instance_type
        root_gb   = g.root_volume_size_gb
        data_gb   = g.data_volume_size_gb
        data_iops = g.data_volume_iops
      }
    }
  ]...)

  controller_count = sum(concat([0], [
    for role, g in var.instance_groups : g.count if contains(coalesce(g.groups, [role]), "kafka_controller")
  ]))
}

data "aws_ami" "debian12" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = var.ami_owners
  filter {
    name   = "name"
    values = [var.ami_name_pattern] # the pattern pins the architecture (amd64)
  }
}

resource "aws_instance" "this" {
  for_each = local.instances

  ami                    = coalesce(var.ami_id, try(data.aws_ami.debian12[0].id, null))
  instance_type          = each.value.type
  subnet_id              = var.subnet_ids[each.value.tier][each.value.subnet_ix]
  vpc_security_group_ids = [var.security_group_ids[local.family[each.value.role]]]
  iam_instance_profile   = var.instance_profile_names[local.family[each.value.role]]
  key_name               = var.ssh_key_name
  monitoring             = var.detailed_monitoring
  ebs_optimized          = true

  # Hostname only: credentials and certificates are delivered by Ansible.
  user_data_base64 = base64encode(templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    hostname = "${var.name}-${each.key}"
  }))

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = each.value.root_gb
    encrypted             = true
    kms_key_id            = var.kms_key_arn
    delete_on_termination = true
    # Tags here, not volume_tags: volume_tags would also claim the attached
    # data volumes and fight their own tags on every plan.
    tags = merge(var.tags, { Name = "${var.name}-${each.key}-root", Project = var.project, Env = var.environment })
  }

  tags = merge(var.tags, {
    Name    = "${var.name}-${each.key}"
    Role    = each.value.role
    Roles   = join(",", each.value.groups)
    Project = var.project
    Env     = var.environment
  })

  lifecycle {
    ignore_changes = [ami] # a newer AMI must not replace running brokers; roll nodes deliberately
  }
}

resource "aws_ebs_volume" "data" {
  for_each          = { for k, v in local.instances : k => v if v.data_gb > 0 }
  availability_zone = aws_instance.this[each.key].availability_zone
  size              = each.value.data_gb
  type              = "gp3"
  iops              = each.value.data_iops
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  tags = merge(var.tags, var.data_volume_tags, {
    Name    = "${var.name}-${each.key}-data"
    Role    = each.value.role
    Project = var.project
    Env     = var.environment
  })
}

resource "aws_volume_attachment" "data" {
  for_each    = aws_ebs_volume.data
  device_name = "/dev/sdf"
  volume_id   = each.value.id
  instance_id = aws_instance.this[each.key].id
}

resource "aws_eip" "bastion" {
  for_each = { for k, v in local.instances : k => v if v.role == "bastion" }
  domain   = "vpc"
  instance = aws_instance.this[each.key].id
  tags     = merge(var.tags, { Name = "${var.name}-${each.key}" })
}
