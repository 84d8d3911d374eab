# Values the mocked AWS provider returns for the module's lookups, chosen so
# that every precondition passes; tests that need a mismatch override them.

mock_data "aws_partition" {
  defaults = {
    partition = "aws"
  }
}

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
  }
}

mock_data "aws_vpc" {
  defaults = {
    id         = "vpc-0123456789abcdef0"
    arn        = "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0123456789abcdef0"
    cidr_block = "10.0.0.0/16"
    cidr_block_associations = [
      { association_id = "vpc-cidr-assoc-0aaaaaaaaaaaaaaa1", cidr_block = "10.0.0.0/16", state = "associated" },
      { association_id = "vpc-cidr-assoc-0aaaaaaaaaaaaaaa2", cidr_block = "100.64.0.0/16", state = "associated" },
      { association_id = "vpc-cidr-assoc-0aaaaaaaaaaaaaaa3", cidr_block = "172.16.0.0/16", state = "disassociated" },
    ]
  }
}

mock_data "aws_subnet" {
  defaults = {
    vpc_id = "vpc-0123456789abcdef0"
  }
}

mock_data "aws_ec2_instance_type" {
  defaults = {
    supported_architectures         = ["arm64"]
    burstable_performance_supported = true
  }
}

mock_data "aws_ami" {
  defaults = {
    id               = "ami-0123456789abcdef0"
    architecture     = "arm64"
    root_device_name = "/dev/xvda"
    block_device_mappings = [
      {
        device_name  = "/dev/xvda"
        ebs          = { volume_size = "8", volume_type = "gp3", snapshot_id = "snap-0123456789abcdef0" }
        no_device    = ""
        virtual_name = ""
      },
    ]
  }
}

mock_data "aws_eip" {
  defaults = {
    public_ip = "203.0.113.10"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::123456789012:instance-profile/egress-0001"
  }
}

# The account the test files describe: zone eu-west-1<x> has public subnet
# subnet-0<x>000001 in vpc-0a000001 (tests/terraform.tfvars), and Elastic IPs
# the module creates there get eipalloc-0<x>00000c with 198.51.100.<n>. Test
# files and run blocks override these where a run needs something else.

override_data {
  target = data.aws_subnet.public["eu-west-1a"]
  values = { availability_zone = "eu-west-1a", vpc_id = "vpc-0a000001" }
}

override_data {
  target = data.aws_subnet.public["eu-west-1b"]
  values = { availability_zone = "eu-west-1b", vpc_id = "vpc-0a000001" }
}

override_data {
  target = data.aws_subnet.public["eu-west-1c"]
  values = { availability_zone = "eu-west-1c", vpc_id = "vpc-0a000001" }
}

override_resource {
  target          = aws_eip.this["eu-west-1a"]
  override_during = plan
  values          = { allocation_id = "eipalloc-0a00000c", public_ip = "198.51.100.1" }
}

override_resource {
  target          = aws_eip.this["eu-west-1b"]
  override_during = plan
  values          = { allocation_id = "eipalloc-0b00000c", public_ip = "198.51.100.2" }
}
