mock_provider "aws" {}
mock_provider "aws" {
  alias = "peer"
}

variables {
  name                 = "fms-test-dr-to-primary"
  vpc_id               = "vpc-0dd0dd0dd0dd0dd0d"
  vpc_cidr             = "10.20.0.0/16"
  route_table_ids      = { "0" = "rtb-0dd0000000000000a", "1" = "rtb-0dd0000000000000b" }
  peer_vpc_id          = "vpc-0aaa0aaa0aaa0aaa0"
  peer_region          = "ap-northeast-2"
  peer_cidr            = "10.10.0.0/16"
  peer_route_table_ids = { "rtb-0aaa00000000000a1" = "rtb-0aaa00000000000a1", "rtb-0aaa00000000000a2" = "rtb-0aaa00000000000a2", "rtb-0aaa00000000000a3" = "rtb-0aaa00000000000a3" }
}

run "requested_here_accepted_in_the_peer_region" {
  command = plan
  assert {
    condition     = aws_vpc_peering_connection.this.peer_region == "ap-northeast-2" && aws_vpc_peering_connection.this.peer_vpc_id == var.peer_vpc_id && aws_vpc_peering_connection.this.auto_accept == false
    error_message = "The requester names the peer VPC and region and leaves acceptance to the accepter (auto_accept is refused cross-region)."
  }
  assert {
    condition     = aws_vpc_peering_connection_accepter.this.auto_accept == true
    error_message = "The accepter (aws.peer, the peer's region) accepts the connection."
  }
}

run "routes_both_ways_on_every_table" {
  command = plan
  assert {
    condition     = toset([for r in aws_route.to_peer : r.route_table_id]) == toset(values(var.route_table_ids)) && alltrue([for r in aws_route.to_peer : r.destination_cidr_block == "10.10.0.0/16"])
    error_message = "Every listed route table of this VPC routes the peer's CIDR into the peering."
  }
  assert {
    condition     = toset([for r in aws_route.from_peer : r.route_table_id]) == toset(values(var.peer_route_table_ids)) && alltrue([for r in aws_route.from_peer : r.destination_cidr_block == "10.20.0.0/16"])
    error_message = "Every listed route table of the peer routes this VPC's CIDR back into the peering."
  }
}

run "dns_resolution_on_both_sides_by_default" {
  command = plan
  assert {
    condition     = one(aws_vpc_peering_connection_options.requester.requester).allow_remote_vpc_dns_resolution && one(aws_vpc_peering_connection_options.accepter.accepter).allow_remote_vpc_dns_resolution
    error_message = "Each side resolves the other's private host names to private addresses."
  }
}

run "rejects_overlapping_cidrs" {
  command = plan
  variables {
    peer_cidr = "10.20.128.0/17"
  }
  expect_failures = [aws_vpc_peering_connection.this]
}

run "rejects_no_route_tables" {
  command = plan
  variables {
    peer_route_table_ids = {}
  }
  expect_failures = [var.peer_route_table_ids]
}

run "rejects_a_bad_peer_vpc_id" {
  command = plan
  variables {
    peer_vpc_id = "10.10.0.0/16"
  }
  expect_failures = [var.peer_vpc_id]
}
