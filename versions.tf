terraform {
  # 1.9 is the first release whose variable validations may refer to other
  # variables (elastic_ip <-> zones[*].eip_allocation_id).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.32.0 added instance_refresh.preferences.max_healthy_percentage, which
      # the Auto Scaling groups use to launch a replacement before terminating.
      # Below 7.0: 7.x is expected to drop attributes 6.x deprecates; the module
      # reads none of those today (no aws_region.name: see main.tf's locals).
      version = ">= 5.32.0, < 7.0"
    }
  }
}
