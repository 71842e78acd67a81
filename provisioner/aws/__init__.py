"""The AWS adapters: the EC2 cloud (:mod:`.ec2`), its client factory and error translation.

boto3 and botocore are imported only inside this package (an import-linter contract enforces it);
everything leaving it is a :mod:`provisioner.model` value or a :mod:`provisioner.errors` exception,
never a boto3 dict or a botocore exception.
"""

from __future__ import annotations
