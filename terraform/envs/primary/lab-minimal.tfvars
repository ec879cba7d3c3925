# Profile "minimal" (11 hosts, ~half the memory of "lab"): the fewest hosts that
# still replicate as production does - three brokers that are their own KRaft
# controllers (RF 3, min ISR 2: acks=all survives a broker loss), two DataNodes
# (HDFS replication 2), one Spark worker. Use with lab.tfvars:
#   fms-lab up --profile minimal
instance_groups = {
  bastion       = { count = 1, instance_type = "t3.micro" }
  kafka         = { count = 3, instance_type = "t3.large", groups = ["kafka", "kafka_controller"], data_volume_size_gb = 20 }
  hdfs_namenode = { count = 1, instance_type = "t3.medium", data_volume_size_gb = 10 }
  hdfs_datanode = { count = 2, instance_type = "t3.medium", data_volume_size_gb = 20 }
  spark_master  = { count = 1, instance_type = "t3.medium" }
  spark_worker  = { count = 1, instance_type = "t3.xlarge" }
  monitoring    = { count = 1, instance_type = "t3.medium" }
  collector     = { count = 1, instance_type = "t3.small" }
}
