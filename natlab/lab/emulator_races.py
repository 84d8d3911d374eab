"""The first apply of a lab, again once when moto lost a race the module did not cause.

Seen on this machine (make verify, 2026-11-29): the provider creates the NAT security group,
revokes its default egress rule and authorizes the module's one, and moto answered the authorize
with ``InvalidPermission.Duplicate`` although the revoke had been accepted (no 5xx logged, the
requests serialized by ``natlab/cloud/serial_wsgi.py``). On AWS the same sequence is the provider's
everyday path. A second apply replaces the half-made group (Terraform marked it tainted) and
converges; any other failure, or the same one twice, fails the lab as before.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from natlab.lab.terraform import TerraformWorkdir
from natlab.lab.terraform_error import TerraformError

logger = logging.getLogger(__name__)

# Seen in make verify on 2026-11-30: CreateLaunchTemplate answered "already exists" for the zone's
# template in the first apply of a fresh emulator (reset when the lab opened). The template's name is
# fixed, not generated, and it is in no state yet: the second apply would meet it again, so the
# orphan (made by this apply) is deleted first.
TEMPLATE_RACE = "InvalidLaunchTemplateName.AlreadyExistsException"
ORPHAN_TEMPLATE = re.compile(r"creating EC2 Launch Template \(([^)]+)\)")

EMULATOR_RACES = (
    "InvalidPermission.Duplicate: The specified rule already exists",
    # The same shape (a change accepted, then refused as already made), seen in make verify on
    # 2026-11-29: the role added to the instance profile, then "Cannot exceed quota" for adding it.
    "LimitExceeded: Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1",
    # Seen in make verify on 2026-11-30: CreateSecurityGroup answered "already exists" for the name
    # the provider had just generated (name_prefix). The second apply generates a new name; the
    # orphan group in the emulator holds nothing and goes with the backend's reset.
    "InvalidGroup.Duplicate: The security group",
    # Seen in a fresh-clone CI run on 2026-11-30: the revoke of a new group's default egress rule
    # answered "does not exist", as if sent a second time (no 5xx logged). The group is tainted and
    # replaced by the second apply, as for the authorize above.
    "InvalidPermission.NotFound: The specified rule does not exist in this security group",
    TEMPLATE_RACE,
)


def apply_retrying_emulator_races(terraform: TerraformWorkdir, ec2: Any) -> None:
    """``terraform.apply()``; once more if the emulator failed it with a known race (``ec2``: its client)."""
    try:
        terraform.apply()
    except TerraformError as error:
        race = next((sign for sign in EMULATOR_RACES if sign in str(error)), None)
        if race is None:
            raise
        logger.warning("emulator race in the first apply (%s): applying once more", race)
        if race == TEMPLATE_RACE:
            for name in ORPHAN_TEMPLATE.findall(str(error)):
                ec2.delete_launch_template(LaunchTemplateName=name)
        terraform.apply()
