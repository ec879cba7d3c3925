output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "availability_zones" {
  description = "Zones the subnets are spread over, in index order."
  value       = var.availability_zones
}

output "subnet_ids" {
  description = "Subnet IDs per tier (public, private, data), one per AZ in availability_zones order."
  value = {
    for tier in keys(local.tier_offset) : tier => [
      for i in range(local.az_count) : aws_subnet.this["${tier}-${i}"].id
    ]
  }
}

output "subnet_cidrs" {
  description = "Subnet CIDRs per tier, one per AZ in availability_zones order."
  value = {
    for tier in keys(local.tier_offset) : tier => [
      for i in range(local.az_count) : local.subnets["${tier}-${i}"].cidr
    ]
  }
}

output "private_route_table_ids" {
  description = "Route tables of the private and data subnets, keyed by AZ index (\"0\", \"1\", ...; known at plan time)."
  value       = { for k, rt in aws_route_table.private : k => rt.id }
}

output "nat_gateway_ids" {
  description = "NAT gateway IDs (one per AZ, or one when single_nat_gateway)."
  value       = [for k in local.nat_keys : aws_nat_gateway.this[k].id]
}

output "s3_endpoint_id" {
  description = "ID of the S3 gateway endpoint."
  value       = aws_vpc_endpoint.s3.id
}

output "flow_log_group_name" {
  description = "CloudWatch log group receiving the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow_logs.name
}
