# DR region: warm standby built from the same configuration; the lake replication target.
# Its region, VPC CIDR and peer are platform.yml's stacks.dr (override with region, vpc_cidr, peer_vpc_cidr).
stack_role = "dr"
