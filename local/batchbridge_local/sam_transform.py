"""Write ``template.yaml`` as CloudFormation will deploy it: the SAM transform applied, offline.

checkov reads SAM resources as written, but it sees the IAM roles SAM generates from ``Policies``, the
API Gateway stage and the Lambda functions with their Globals only in the transformed template. The
transform is cfn-lint's (the same one ``cfn-lint`` and ``sam validate --lint`` lint): it swaps local code
paths for placeholder S3 URIs and needs no AWS account. SAM copies each resource's ``Metadata`` to the
resources it generates, so a ``checkov: skip`` written next to a SAM resource applies to them too.

    python -m batchbridge_local.sam_transform template.yaml .aws-sam/checkov/template.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cfnlint.decode import decode
from cfnlint.template.transforms._sam import Transform


def transform(source: Path, region: str = "us-east-1") -> dict[str, object]:
    template, problems = decode(str(source))
    if problems or template is None:
        raise SystemExit(f"{source}: cannot parse: {problems}")
    sam = Transform(str(source), template, region)
    problems = sam.transform_template()
    if problems:
        raise SystemExit(f"{source}: SAM transform failed: {[str(p) for p in problems]}")
    return dict(sam.template())


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m batchbridge_local.sam_transform TEMPLATE OUTPUT.json")
    source, target = Path(argv[0]), Path(argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(transform(source), indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
