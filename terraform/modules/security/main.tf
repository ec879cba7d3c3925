locals {
  # The security groups and every ingress rule come from the platform contract
  # (platform.yml at the repository root, passed in by the env roots): Ansible
  # configures the listeners from the same file, so a port cannot be opened
  # here and served on another one there.
  groups = keys(var.security_groups)

  # CIDR classes (admin, dashboard, peer) name a variable of this module that
  # holds the class's CIDRs: the contract names who, each stack says where.
  cidr_variables = {
    admin_cidrs            = var.admin_cidrs
    dashboard_cidrs        = var.dashboard_cidrs
    replication_peer_cidrs = var.replication_peer_cidrs
  }
  cidrs_of_class = { for class, c in var.cidr_classes : class => local.cidr_variables[c.variable] }

  # One rule per port, ingress entry, target group, source and protocol.
  rules = flatten([
    for name, p in var.ports : [
      for entry in p.ingress : [
        for to in entry.to : [
          for from in entry.from : [
            for protocol in p.protocols : {
              name     = name
              to       = to
              from     = from
              port     = p.port
              port_to  = coalesce(p.port_to, p.port)
              protocol = protocol
              desc     = entry.description
            }
          ]
        ]
      ]
    ]
  ])

  # Keys: "to<-from:port" for TCP (the scheme the rules have always had, so
  # existing state keeps its addresses), "to<-from:port/udp" for UDP.
  sg_rules = {
    for r in local.rules : "${r.to}<-${r.from}:${r.port}${r.protocol == "tcp" ? "" : "/${r.protocol}"}" => r
    if contains(local.groups, r.from)
  }
  cidr_rules = merge([
    for r in local.rules : {
      for cidr in local.cidrs_of_class[r.from] :
      "${r.to}<-${cidr}:${r.port}${r.protocol == "tcp" ? "" : "/${r.protocol}"}" => merge(r, { cidr = cidr, class = r.from })
    } if !contains(local.groups, r.from)
  ]...)

  # The peer region's Kafka is reached on the ports this region opens to the
  # peer: both stacks apply the same contract, so the rules are symmetric.
  peer_egress = {
    for k, r in local.cidr_rules : "${r.to}->${r.cidr}:${r.port}${r.protocol == "tcp" ? "" : "/${r.protocol}"}" => r
    if var.cidr_classes[r.class].variable == "replication_peer_cidrs"
  }
}

resource "aws_security_group" "this" {
  # checkov:skip=CKV2_AWS_5:Attached to instances by the compute module (vpc_security_group_ids); checkov cannot follow the reference across modules.
  for_each    = var.security_groups
  name        = "${var.name}-${each.key}"
  description = "FMS ${each.key} nodes"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}", Role = each.key })

  lifecycle {
    create_before_destroy = true
  }
}

# aws_security_group_rule rather than the newer per-rule resources: the AWS
# emulator the lab and CI apply to loses descriptions of group-referenced rules
# in DescribeSecurityGroupRules, which would make every plan show drift.
resource "aws_security_group_rule" "from_group" {
  for_each                 = local.sg_rules
  type                     = "ingress"
  security_group_id        = aws_security_group.this[each.value.to].id
  source_security_group_id = aws_security_group.this[each.value.from].id
  protocol                 = each.value.protocol
  from_port                = each.value.port
  to_port                  = each.value.port_to
  description              = each.value.desc
}

resource "aws_security_group_rule" "from_cidr" {
  for_each          = local.cidr_rules
  type              = "ingress"
  security_group_id = aws_security_group.this[each.value.to].id
  cidr_blocks       = [each.value.cidr]
  protocol          = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port_to
  description       = each.value.desc
}

# Egress: anything inside the VPC (the receiving group enforces ports) and
# HTTP/HTTPS out through the NAT for OS packages and artifact downloads.
resource "aws_security_group_rule" "egress_vpc" {
  for_each          = aws_security_group.this
  type              = "egress"
  security_group_id = each.value.id
  cidr_blocks       = [var.vpc_cidr]
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  description       = "Any traffic inside the VPC"
}

resource "aws_security_group_rule" "egress_web" {
  for_each = {
    for pair in setproduct(local.groups, [80, 443]) : "${pair[0]}:${pair[1]}" => { group = pair[0], port = pair[1] }
  }
  type              = "egress"
  security_group_id = aws_security_group.this[each.value.group].id
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "Package and artifact downloads through the NAT gateway"
}

resource "aws_security_group_rule" "egress_peer" {
  for_each          = local.peer_egress
  type              = "egress"
  security_group_id = aws_security_group.this[each.value.to].id
  cidr_blocks       = [each.value.cidr]
  protocol          = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port_to
  description       = "To the peer region: ${each.value.desc}"
}
