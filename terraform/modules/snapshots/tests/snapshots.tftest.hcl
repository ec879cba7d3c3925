mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/fms-test-dlm" }
  }
}

variables {
  name = "fms-test"
  tags = { Project = "fms", Env = "production" }
}

run "daily_snapshots_kept_seven_days_of_tagged_volumes" {
  command = plan

  assert {
    condition     = length(aws_dlm_lifecycle_policy.data_volumes) == 1 && aws_dlm_lifecycle_policy.data_volumes[0].state == "ENABLED"
    error_message = "one enabled lifecycle policy"
  }
  assert {
    condition     = aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].resource_types == tolist(["VOLUME"])
    error_message = "the policy snapshots volumes"
  }
  assert {
    condition     = aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].target_tags == tomap({ Snapshots = "daily" })
    error_message = "volumes are selected by the Snapshots=daily tag the compute module puts on data volumes"
  }
  assert {
    condition = (
      aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].schedule[0].create_rule[0].interval == 24
      && aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].schedule[0].create_rule[0].interval_unit == "HOURS"
      && aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].schedule[0].create_rule[0].times == tolist(["18:00"])
    )
    error_message = "one snapshot a day at 18:00 UTC (03:00 in Seoul)"
  }
  assert {
    condition     = aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].schedule[0].retain_rule[0].count == 7
    error_message = "7 daily snapshots kept, as the design documents ask"
  }
  assert {
    condition     = aws_dlm_lifecycle_policy.data_volumes[0].policy_details[0].schedule[0].copy_tags
    error_message = "snapshots carry their volume's tags"
  }
  assert {
    condition = flatten([
      for s in data.aws_iam_policy_document.dlm_assume.statement : [for p in s.principals : p.identifiers]
    ]) == ["dlm.amazonaws.com"]
    error_message = "the role is assumed by DLM only"
  }
}

run "disabled_creates_nothing_but_still_names_the_tags" {
  command = plan
  variables {
    enabled = false
  }

  assert {
    condition     = length(aws_dlm_lifecycle_policy.data_volumes) == 0 && length(aws_iam_role.dlm) == 0
    error_message = "nothing is created when disabled"
  }
  assert {
    condition     = output.target_tags == tomap({ Snapshots = "daily" })
    error_message = "the compute module still gets the tags"
  }
}

run "rejects_a_time_that_is_not_hh_mm" {
  command = plan
  variables {
    daily_at = "3am"
  }
  expect_failures = [var.daily_at]
}

run "rejects_keeping_no_snapshot" {
  command = plan
  variables {
    retain_count = 0
  }
  expect_failures = [var.retain_count]
}
