provider "aws" {
  region = var.region
}

# Everything already exists, so the module looks the VPC's CIDR blocks up itself
# and a single `terraform apply` is enough.
module "nat" {
  source = "../../"

  name          = var.name
  vpc_id        = var.vpc_id
  zones         = var.zones
  elastic_ip    = var.elastic_ip
  instance_type = var.instance_type
  tags          = var.tags
}
