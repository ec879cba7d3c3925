# A VPC peering between two regions of one account, owned by one stack's state:
# the requester side is this stack's VPC (provider aws), the accepter side the
# peer VPC (provider aws.peer, the peer's region). Both directions' routes live
# here too, so removing this module removes every route that uses the peering.

locals {
  # First and last address of each VPC as integers: two ranges overlap unless one ends before the other starts.
  ranges = {
    for k, c in { vpc = var.vpc_cidr, peer = var.peer_cidr } : k => {
      first           = sum([for i, o in split(".", cidrhost(c, 0)) : tonumber(o) * pow(256, 3 - i)])
      size            = pow(2, 32 - tonumber(split("/", c)[1]))
    }
  }
  overlap = !(
    local.ranges.vpc.first + local.ranges.vpc.size - 1 < local.ranges.peer.first ||
    local.ranges.peer.first + local.ranges.peer.size - 1 < local.ranges.vpc.first
  )
}

resource "aws_vpc_peering_connection" "this" {
  vpc_id      = var.vpc_id
  peer_vpc_id = var.peer_vpc_id
  peer_region = var.peer_region
  # Cross-region: auto_accept must stay false here; the accepter below accepts in its own region.
  auto_accept = false
  tags        = merge(var.tags, { Name = var.name })

  lifecycle {
    precondition {
      condition     = !local.overlap
      error_message = "vpc_cidr ${var.vpc_cidr} and peer_cidr ${var.peer_cidr} overlap: a peering cannot route between them."
    }
  }
}

# One connection, seen from two regions: both sides carry the same tags (the
# emulator keeps one tag set for it, and differing tags would fight on every plan).
resource "aws_vpc_peering_connection_accepter" "this" {
  provider                  = aws.peer
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true
  tags                      = merge(var.tags, { Name = var.name })
}

# Options can only be set once the connection is active, each side in its own region.
resource "aws_vpc_peering_connection_options" "requester" {
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
  requester {
    allow_remote_vpc_dns_resolution = var.allow_remote_vpc_dns_resolution
  }
}

resource "aws_vpc_peering_connection_options" "accepter" {
  provider                  = aws.peer
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
  accepter {
    allow_remote_vpc_dns_resolution = var.allow_remote_vpc_dns_resolution
  }
}

resource "aws_route" "to_peer" {
  for_each                  = var.route_table_ids
  route_table_id            = each.value
  destination_cidr_block    = var.peer_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}

resource "aws_route" "from_peer" {
  provider                  = aws.peer
  for_each                  = var.peer_route_table_ids
  route_table_id            = each.value
  destination_cidr_block    = var.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}
