# Primary region: serves traffic, replicates Kafka (MirrorMaker 2 in DR pulls) and the lake to DR.
stack_role    = "primary"
region        = "ap-northeast-2"
vpc_cidr      = "10.10.0.0/16"
peer_vpc_cidr = "10.20.0.0/16"
# admin_cidrs = ["203.0.113.0/24"]   # your office / VPN
# lake_replication = {               # after applying envs/dr: its lake_bucket_arns and kms_key_arn outputs
#   enabled                 = true
#   destination_bucket_arns = { raw = "arn:aws:s3:::...", processed = "...", curated = "...", archive = "..." }
#   destination_kms_key_arn = "arn:aws:kms:ap-northeast-1:..."
# }
