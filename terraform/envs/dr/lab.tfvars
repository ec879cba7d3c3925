# The local lab (make lab): the same stack against the AWS emulator, sized to
# fit one 24 GiB machine. The lab environment gives the stack its lab_vpc_cidr
# from platform.yml (inside 198.18.0.0/15, RFC 2544, reserved for network
# testing) so its addresses can never collide with a real network.
environment        = "lab"
name               = "fms-lab-dr"
availability_zones = ["ap-northeast-1a", "ap-northeast-1c"]
single_nat_gateway = true
# The operators' office network (TEST-NET-3, a documentation range). The lab machine stands
# there as the operator: it reaches the bastion's SSH and the dashboards and nothing else
# (scripts/fms_tools/lab/firewall.py), so Ansible and every ssh go through the bastion, as on AWS.
admin_cidrs        = ["203.0.113.0/24"]
dashboard_cidrs    = ["203.0.113.0/24"]
lake_force_destroy = true
# The emulator has no MonitorInstances API; CloudWatch does not exist in the lab anyway.
detailed_monitoring = false
# Nor a Data Lifecycle Manager API: the data volumes are tagged for snapshots, no policy takes them.
enable_volume_snapshots = false
# The lab registers a Debian 12 image in the emulator under its own account.
ami_owners       = ["self"]
ami_name_pattern = "debian-12-amd64-lab-*"

# Profile "lab": 12 hosts. KRaft combined mode: the three brokers are the controllers.
instance_groups = {
  bastion       = { count = 1, instance_type = "t3.micro" }
  kafka         = { count = 3, instance_type = "t3.large", groups = ["kafka", "kafka_controller"], data_volume_size_gb = 20 }
  hdfs_namenode = { count = 1, instance_type = "t3.medium", data_volume_size_gb = 10 }
  hdfs_datanode = { count = 2, instance_type = "t3.medium", data_volume_size_gb = 20 }
  spark_master  = { count = 1, instance_type = "t3.medium" }
  spark_worker  = { count = 2, instance_type = "t3.xlarge" }
  monitoring    = { count = 1, instance_type = "t3.medium" }
  collector     = { count = 1, instance_type = "t3.small" }
}
