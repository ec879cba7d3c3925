mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "ap-northeast-2" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name          = "fms-test"
  role_families = keys(yamldecode(file("../../../platform.yml")).security_groups)
  lake_bucket_arns = {
    raw       = "arn:aws:s3:::lake-raw"
    processed = "arn:aws:s3:::lake-processed"
    curated   = "arn:aws:s3:::lake-curated"
    archive   = "arn:aws:s3:::lake-archive"
  }
  kms_key_arn = "arn:aws:kms:ap-northeast-2:123456789012:key/test"
}

run "only_spark_and_collector_touch_the_lake" {
  command = plan
  assert {
    condition     = toset(keys(aws_iam_role_policy.lake)) == toset(["spark", "collector"])
    error_message = "Only the Spark and collector roles get lake policies."
  }
  assert {
    condition     = length(aws_iam_instance_profile.this) == 6
    error_message = "Every role family has an instance profile."
  }
  assert {
    condition     = output.lake_access.collector.write == ["raw"] && length(output.lake_access.collector.read) == 0
    error_message = "The collector only writes raw objects."
  }
  assert {
    condition     = !contains(output.lake_access.spark.write, "raw")
    error_message = "Spark never writes to the raw tier."
  }
}
