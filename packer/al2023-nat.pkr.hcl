# Baked NAT image: the standard Amazon Linux 2023 AMI for arm64 (t4g) plus nftables, nothing else.
# The boot script then finds `nft` and skips its dnf install, the slowest and riskiest step of a
# boot on the standard image (README, "Baked image"). Build: `packer init . && packer build .` in
# this folder; pass the resulting AMI to the module as `ami_id`.

packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  description = "Region to build the image in (the module's region: AMIs are regional)."
  type        = string
}

variable "build_instance_type" {
  description = "Instance type of the temporary build instance. Not the NAT's: a nano's 512 MiB is what makes dnf slow and OOM-prone, and the image runs on any arm64 type."
  type        = string
  default     = "t4g.small"
}

variable "ami_name_prefix" {
  description = "Name of the image, before the build time."
  type        = string
  default     = "al2023-nat"
}

# The same source as the module's default image: AL2023 on its default kernel, as AWS publishes it in SSM.
data "amazon-parameterstore" "al2023_arm64" {
  name   = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
  region = var.region
}

locals {
  built_at = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "al2023_nat" {
  region        = var.region
  source_ami    = data.amazon-parameterstore.al2023_arm64.value
  instance_type = var.build_instance_type
  ssh_username  = "ec2-user"
  ami_name      = "${var.ami_name_prefix}-${local.built_at}"

  # IMDSv2 only, as the module's launch template requires.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = {
    Name        = "${var.ami_name_prefix}-${local.built_at}"
    BaseAMI     = "{{ .SourceAMI }}"
    BaseAMIName = "{{ .SourceAMIName }}"
    Packages    = "nftables"
  }
}

build {
  sources = ["source.amazon-ebs.al2023_nat"]

  # No weak dependencies, as the boot script installs it: the image differs from the standard one by
  # nftables and what it strictly needs. `rpm -q` fails the build if it did not land.
  provisioner "shell" {
    inline = [
      "sudo dnf install -y --setopt=install_weak_deps=False nftables",
      "rpm -q nftables",
      "sudo dnf clean all",
    ]
  }
}
