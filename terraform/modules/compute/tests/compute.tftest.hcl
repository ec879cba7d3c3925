mock_provider "aws" {}

variables {
  name        = "fms-test"
  environment = "production"
  production  = true
  ami_id      = "ami-0123456789abcdef0"
  kms_key_arn = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
  subnet_ids = {
    public  = ["subnet-pub0", "subnet-pub1", "subnet-pub2"]
    private = ["subnet-prv0", "subnet-prv1", "subnet-prv2"]
    data    = ["subnet-dat0", "subnet-dat1", "subnet-dat2"]
  }
  security_groups        = yamldecode(file("../../../platform.yml")).security_groups
  security_group_ids     = { bastion = "sg-b", kafka = "sg-k", hdfs = "sg-h", spark = "sg-s", monitoring = "sg-m", collector = "sg-c" }
  instance_profile_names = { bastion = "ip-b", kafka = "ip-k", hdfs = "ip-h", spark = "ip-s", monitoring = "ip-m", collector = "ip-c" }
  instance_groups = {
    bastion          = { count = 1, instance_type = "t3.small" }
    kafka_controller = { count = 3, instance_type = "m6i.large", data_volume_size_gb = 50 }
    kafka            = { count = 3, instance_type = "r6i.xlarge", data_volume_size_gb = 1000 }
    hdfs_namenode    = { count = 1, instance_type = "r6i.xlarge", data_volume_size_gb = 200 }
    hdfs_datanode    = { count = 4, instance_type = "d3.xlarge", data_volume_size_gb = 4000 }
    spark_worker     = { count = 2, instance_type = "r6i.2xlarge" }
  }
}

run "spread_tags_and_hardening" {
  command = plan

  assert {
    condition     = length(aws_instance.this) == 14
    error_message = "One instance per count across groups."
  }
  assert {
    condition     = toset([for k in ["kafka-1", "kafka-2", "kafka-3"] : aws_instance.this[k].subnet_id]) == toset(["subnet-dat0", "subnet-dat1", "subnet-dat2"])
    error_message = "Three brokers must land in three different AZs (data tier)."
  }
  assert {
    condition     = aws_instance.this["hdfs-datanode-4"].subnet_id == "subnet-dat0"
    error_message = "Instance i goes to AZ i mod N (the 4th DataNode wraps to the first AZ)."
  }
  assert {
    condition     = aws_instance.this["bastion-1"].subnet_id == "subnet-pub0" && aws_instance.this["spark-worker-2"].subnet_id == "subnet-prv1"
    error_message = "The bastion sits in a public subnet, Spark workers in private subnets."
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.metadata_options[0].http_tokens == "required" && i.metadata_options[0].http_put_response_hop_limit == 1])
    error_message = "IMDSv2 must be required on every instance."
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.root_block_device[0].encrypted && i.root_block_device[0].volume_type == "gp3"])
    error_message = "Root volumes must be encrypted gp3."
  }
  assert {
    condition     = alltrue([for v in aws_ebs_volume.data : v.encrypted && v.type == "gp3" && v.kms_key_id == var.kms_key_arn])
    error_message = "Data volumes must be KMS-encrypted gp3."
  }
  assert {
    condition     = length(aws_ebs_volume.data) == 11
    error_message = "Only groups with data_volume_size_gb > 0 get a data volume (3+3+1+4)."
  }
  assert {
    condition     = aws_instance.this["hdfs-namenode-1"].tags["Name"] == "fms-test-hdfs-namenode-1" && aws_instance.this["hdfs-namenode-1"].tags["Role"] == "hdfs_namenode" && aws_instance.this["hdfs-namenode-1"].tags["Env"] == "production" && aws_instance.this["hdfs-namenode-1"].tags["Project"] == "fms"
    error_message = "Name (DNS-safe), Role, Env and Project tags must be set."
  }
  assert {
    condition     = aws_instance.this["kafka-controller-2"].tags["Roles"] == "kafka_controller" && aws_instance.this["kafka-controller-2"].vpc_security_group_ids == toset(["sg-k"]) && aws_instance.this["kafka-controller-2"].iam_instance_profile == "ip-k"
    error_message = "Controllers join the kafka_controller group with the kafka SG and profile."
  }
  assert {
    condition     = !strcontains(base64decode(aws_instance.this["kafka-1"].user_data_base64), "password") && strcontains(base64decode(aws_instance.this["kafka-1"].user_data_base64), "hostname: fms-test-kafka-1")
    error_message = "User data sets only the hostname."
  }
  assert {
    condition     = output.kafka_controller_count == 3 && join(",", output.inventory_groups["kafka_controller"]) == "fms-test-kafka-controller-1,fms-test-kafka-controller-2,fms-test-kafka-controller-3"
    error_message = "Inventory groups must mirror the Roles tags."
  }
}

run "combined_mode_brokers_are_controllers" {
  command = plan
  variables {
    environment = "lab"
    production  = false
    instance_groups = {
      kafka = { count = 3, instance_type = "t3.large", groups = ["kafka", "kafka_controller"] }
    }
  }
  assert {
    condition     = aws_instance.this["kafka-1"].tags["Roles"] == "kafka,kafka_controller" && output.kafka_controller_count == 3
    error_message = "In combined mode brokers carry both groups in the Roles tag."
  }
}

run "rejects_even_controller_count" {
  command = plan
  variables {
    instance_groups = {
      kafka_controller = { count = 4, instance_type = "m6i.large" }
      kafka            = { count = 3, instance_type = "r6i.xlarge" }
    }
  }
  expect_failures = [var.instance_groups]
}

run "rejects_single_controller_in_production" {
  command = plan
  variables {
    instance_groups = {
      kafka_controller = { count = 1, instance_type = "m6i.large" }
      kafka            = { count = 3, instance_type = "r6i.xlarge" }
    }
  }
  expect_failures = [var.instance_groups]
}

run "single_controller_allowed_outside_production" {
  command = plan
  variables {
    environment = "dev"
    production  = false
    instance_groups = {
      kafka = { count = 1, instance_type = "t3.large", groups = ["kafka", "kafka_controller"] }
    }
  }
}

run "rejects_unknown_role" {
  command = plan
  variables {
    instance_groups = {
      kafka_controller = { count = 3, instance_type = "m6i.large" }
      kafka            = { count = 3, instance_type = "r6i.xlarge" }
      zookeeper        = { count = 3, instance_type = "t3.small" }
    }
  }
  expect_failures = [var.instance_groups]
}
