output "id" {
  description = "ID of the VPC peering connection (pcx-...)."
  value       = aws_vpc_peering_connection.this.id
}

output "accept_status" {
  description = "Status of the connection as the accepter saw it (active once accepted)."
  value       = aws_vpc_peering_connection_accepter.this.accept_status
}

output "peer_cidr" {
  description = "The peer VPC's CIDR, routed through the connection from route_table_ids."
  value       = var.peer_cidr
}

output "route_ids" {
  description = "Routes through the connection: to_peer in this VPC, from_peer in the peer VPC."
  value = {
    to_peer   = { for k, r in aws_route.to_peer : k => r.id }
    from_peer = { for k, r in aws_route.from_peer : k => r.id }
  }
}
