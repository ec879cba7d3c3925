# DR region: warm standby built from the same configuration; the lake replication target.
stack_role    = "dr"
region        = "ap-northeast-1"
vpc_cidr      = "10.20.0.0/16"
peer_vpc_cidr = "10.10.0.0/16"
