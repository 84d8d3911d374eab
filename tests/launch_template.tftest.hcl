# Launch template: hardened instance settings, tags the IAM policy relies on,
# and the rendered configuration.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { app = "rtb-0a000001", db = "rtb-0a000002" } }
  }
}

run "requires_imdsv2_and_encrypts_the_root_volume" {
  command = plan

  # The default image is only known after the first apply (tests/image.tftest.hcl):
  # a given ami_id lets the plan read the image's root device and snapshot.
  variables {
    ami_id = "ami-0123456789abcdef0"
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].metadata_options[0].http_tokens == "required"
    error_message = "Instances must require IMDSv2 tokens."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDS must not be reachable beyond the instance (hop limit 1)."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "The root volume must be encrypted."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].volume_type == "gp3"
    error_message = "The root volume must be gp3."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].volume_size == 8
    error_message = "Without root_volume_size the root volume must have the size of the AMI's root snapshot."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].device_name == "/dev/xvda"
    error_message = "The root volume mapping must use the AMI's root device name."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].key_name == null
    error_message = "No key pair must be installed by default."
  }
}

run "looks_up_the_default_ami_for_the_instance_architecture_and_holds_it" {
  command = plan

  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0a0000a1" }
  }

  assert {
    condition     = data.aws_ssm_parameter.al2023[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    error_message = "Without ami_id the image must come from the SSM parameter of Amazon Linux 2023, default kernel, for the instance type's architecture (t4g.nano: arm64)."
  }

  assert {
    condition     = terraform_data.default_ami[0].input == "ami-0a0000a1"
    error_message = "The image ID held by terraform_data.default_ami must be the SSM parameter's value."
  }

  assert {
    condition     = terraform_data.default_ami[0].triggers_replace == ["initial", "arm64"]
    error_message = "The held image must be looked up again only when ami_refresh_key (default \"initial\") or the architecture changes."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].instance_type == "t4g.nano"
    error_message = "The default instance type is t4g.nano."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].network_interfaces[0].associate_public_ip_address == "true"
    error_message = "The NAT instance needs a public address."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].network_interfaces[0].delete_on_termination == "true"
    error_message = "The primary interface must go with its instance."
  }
}

run "looks_up_the_x86_64_image_for_an_x86_64_instance_type" {
  command = plan

  variables {
    instance_type = "t3.nano"
  }

  override_data {
    target = data.aws_ec2_instance_type.this
    values = { supported_architectures = ["x86_64", "i386"] }
  }

  assert {
    condition     = data.aws_ssm_parameter.al2023[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    error_message = "An x86_64 instance type must get the x86_64 image."
  }

  assert {
    condition     = terraform_data.default_ami[0].triggers_replace == ["initial", "x86_64"]
    error_message = "The architecture must be part of what replaces the held image."
  }
}

run "tags_instance_interface_and_volume_with_the_group" {
  command = plan

  variables {
    tags = { team = "network" }
  }

  assert {
    condition     = sort([for spec in aws_launch_template.this["eu-west-1a"].tag_specifications : spec.resource_type]) == tolist(["instance", "network-interface", "volume"])
    error_message = "The launch template must tag instances, network interfaces and volumes."
  }

  assert {
    condition = alltrue([
      for spec in aws_launch_template.this["eu-west-1a"].tag_specifications :
      spec.tags["nat-instance:group"] == "egress-eu-west-1a" && spec.tags["team"] == "network"
    ])
    error_message = "Every launched resource must carry nat-instance:group = <group name> (the IAM condition) and the module tags."
  }

  assert {
    condition = contains([
      for tag in aws_autoscaling_group.this["eu-west-1a"].tag : tag.key if tag.propagate_at_launch
    ], "team")
    error_message = "Module tags must propagate at launch."
  }
}

run "renders_the_configuration_into_the_user_data" {
  command = plan

  variables {
    ami_id                 = "ami-0a000001"
    root_volume_size       = 16
    notification_topic_arn = "arn:aws:sns:eu-west-1:123456789012:nat-events"
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0a000001", architecture = "arm64", root_device_name = "/dev/sda1" }
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].image_id == "ami-0a000001"
    error_message = "ami_id must be used when given."
  }

  assert {
    condition     = length(data.aws_ssm_parameter.al2023) == 0 && length(terraform_data.default_ami) == 0
    error_message = "With ami_id there must be no SSM lookup and no held default image."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].device_name == "/dev/sda1" && aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].volume_size == 16
    error_message = "The root volume must use the AMI's root device name and root_volume_size when given."
  }

  assert {
    condition = alltrue([
      for fragment in ["NAT_ZONE='eu-west-1a'", "NAT_ASG_NAME='egress-eu-west-1a'", "NAT_ROUTE_TABLE_IDS='rtb-0a000001 rtb-0a000002'", "NAT_ROUTE_DESTINATION='0.0.0.0/0'", "NAT_LIFECYCLE_HOOK_NAME='egress-launch'", "NAT_NOTIFICATION_TOPIC_ARN='arn:aws:sns:eu-west-1:123456789012:nat-events'"] :
      strcontains(output.rendered_user_data["eu-west-1a"], fragment)
    ])
    error_message = "The user data must carry the zone, group, route tables, destination, hook name and notification topic."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], replace(file("${path.module}/userdata/nat-boot.sh"), "/(?m)^[ \\t]*#([^!\\n].*)?\\n/", ""))
    error_message = "The user data must include userdata/nat-boot.sh without its comment lines."
  }

  assert {
    condition     = !strcontains(output.rendered_user_data["eu-west-1a"], "\n# ") && startswith(output.rendered_user_data["eu-west-1a"], "#!/usr/bin/env bash\n")
    error_message = "The user data must carry no comment line, and keep its shebang."
  }

  assert {
    condition     = startswith(aws_launch_template.this["eu-west-1a"].user_data, "H4sI") && length(aws_launch_template.this["eu-west-1a"].user_data) <= 21848
    error_message = "The launch template must carry the user data gzip-compressed (base64 of 1f 8b 08), within EC2's 16384 bytes."
  }
}
