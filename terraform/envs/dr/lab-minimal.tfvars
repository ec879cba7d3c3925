# Profile "minimal" (8 hosts, ~half the memory of "lab"): one broker that is its
# own controller, one DataNode, one Spark worker (the lab's DR standby needs a
# reachable cluster, not the primary's fault tolerance). Use with lab.tfvars:
#   fms-lab up --profile minimal
instance_groups = {
  bastion       = { count = 1, instance_type = "t3.micro" }
  kafka         = { count = 1, instance_type = "t3.large", groups = ["kafka", "kafka_controller"], data_volume_size_gb = 20 }
  hdfs_namenode = { count = 1, instance_type = "t3.medium", data_volume_size_gb = 10 }
  hdfs_datanode = { count = 1, instance_type = "t3.medium", data_volume_size_gb = 20 }
  spark_master  = { count = 1, instance_type = "t3.medium" }
  spark_worker  = { count = 1, instance_type = "t3.xlarge" }
  monitoring    = { count = 1, instance_type = "t3.medium" }
  collector     = { count = 1, instance_type = "t3.small" }
}
