# Primary region: serves traffic, replicates Kafka (MirrorMaker 2 in DR pulls) and the lake to DR.
# Its region, VPC CIDR and peer are platform.yml's stacks.primary (override with region, vpc_cidr, peer_vpc_cidr).
stack_role = "primary"
# admin_cidrs = ["203.0.113.0/24"]   # your office / VPN
# lake_replication = {               # after applying envs/dr: its lake_bucket_arns and kms_key_arn outputs
#   enabled                 = true
#   destination_bucket_arns = { raw = "arn:aws:s3:::...", processed = "...", curated = "...", archive = "..." }
#   destination_kms_key_arn = "arn:aws:kms:<dr region>:..."
# }
