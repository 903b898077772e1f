"""AWS list prices BatchBridge reports costs with, kept in one place with the date they were read.

US East (N. Virginia), on-demand, without free tiers; other regions differ by a few percent. Every cost
figure the code reports (batch status, completion event, benchmarks) is these prices times counts the
code knows, so a change of price is a change here alone.
"""

from __future__ import annotations

from typing import Final

#: When these prices were taken from the AWS pricing pages.
PRICES_AS_OF: Final = "2026-11-01"
REGION: Final = "us-east-1"

#: Step Functions Standard: $0.025 per 1,000 state transitions.
SFN_USD_PER_TRANSITION: Final = 0.025 / 1000
#: Lambda: $0.20 per million requests; arm64 duration $0.0000133334 per GB-second.
LAMBDA_USD_PER_REQUEST: Final = 0.20 / 1_000_000
LAMBDA_USD_PER_GB_SECOND_ARM64: Final = 0.0000133334
#: DynamoDB on-demand: $0.625 per million write request units, $0.125 per million read request units.
DYNAMODB_USD_PER_WRITE_UNIT: Final = 0.625 / 1_000_000
DYNAMODB_USD_PER_READ_UNIT: Final = 0.125 / 1_000_000
#: S3 Standard: PUT, COPY, POST, LIST $0.005 per 1,000; GET and others $0.0004 per 1,000.
S3_USD_PER_PUT: Final = 0.005 / 1000
S3_USD_PER_GET: Final = 0.0004 / 1000
#: SNS standard topics: $0.50 per million publishes (each 64 KB chunk of a message counts as one).
SNS_USD_PER_PUBLISH: Final = 0.50 / 1_000_000
