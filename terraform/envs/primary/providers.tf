provider "aws" {
  region = local.region # platform.yml stacks.<stack_role>.region unless var.region overrides it

  # An endpoint override (the lab's AWS emulator, or a private API gateway)
  # implies a non-AWS endpoint: skip the checks only real AWS can answer.
  skip_credentials_validation = var.aws_endpoint_url != null
  skip_metadata_api_check     = var.aws_endpoint_url != null
  skip_region_validation      = var.aws_endpoint_url != null
  s3_use_path_style           = var.aws_endpoint_url != null

  dynamic "endpoints" {
    for_each = var.aws_endpoint_url == null ? [] : [var.aws_endpoint_url]
    content {
      ec2  = endpoints.value
      emr  = endpoints.value
      iam  = endpoints.value
      kms  = endpoints.value
      logs = endpoints.value
      s3   = endpoints.value
      sts  = endpoints.value
    }
  }

  default_tags {
    tags = {
      Project   = var.project
      Env       = var.environment
      ManagedBy = "terraform"
      Stack     = var.stack_role
    }
  }
}

# The peer stack's region (platform.yml stacks.<peer>.region): the standby stack
# accepts its VPC peering and adds the return routes there (modules/peering), and
# finds the peer VPC there. Same settings as above, another region; a stack
# without a peer points it at its own region and never uses it.
provider "aws" {
  alias  = "peer"
  region = local.peer_region

  skip_credentials_validation = var.aws_endpoint_url != null
  skip_metadata_api_check     = var.aws_endpoint_url != null
  skip_region_validation      = var.aws_endpoint_url != null
  s3_use_path_style           = var.aws_endpoint_url != null

  dynamic "endpoints" {
    for_each = var.aws_endpoint_url == null ? [] : [var.aws_endpoint_url]
    content {
      ec2 = endpoints.value
      sts = endpoints.value
    }
  }

  default_tags {
    tags = {
      Project   = var.project
      Env       = var.environment
      ManagedBy = "terraform"
      Stack     = var.stack_role
    }
  }
}
