"""The limits BatchBridge holds every batch to, in one place: what a client may send, and what a batch
may grow to. tests/unit/test_scale_limits.py derives from them (and from the state machine's definition)
that a batch of the largest size stays inside every AWS quota it meets.
"""

from __future__ import annotations

from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

#: Jobs in one batch, whatever a provider declares (each declares its own maximum up to this).
MAX_JOBS_PER_BATCH: Final = 1_000_000
#: One job, as JSON. The providers' jobs are a few hundred bytes; a job this large is a mistake.
MAX_JOB_BYTES: Final = 64 * KiB
#: How deep a job's values may nest.
MAX_JOB_DEPTH: Final = 32
#: A request body of inline jobs (larger batches go through an upload).
MAX_BODY_BYTES: Final = 5 * MiB
#: An uploaded file of jobs. JSON Lines: what S3 takes in one PUT. CSV validates an order of magnitude more
#: slowly (each cell is decoded on its own), so a smaller file: either validates well inside one 15-minute
#: invocation (tests/unit/test_scale_limits.py). Larger work is split into batches.
MAX_UPLOAD_BYTES: Final = 5 * GiB
MAX_CSV_UPLOAD_BYTES: Final = 1 * GiB
#: A provider's answer for one job, as kept in the results files and the outcome rows (a longer one is
#: replaced by ``{"truncated": true, "bytes": n}``, and the row marked ``responseTruncated``).
MAX_RESPONSE_BYTES: Final = 4 * KiB
MAX_ROW_RESPONSE_BYTES: Final = MAX_RESPONSE_BYTES
#: A batch's provider options, as JSON.
MAX_OPTIONS_BYTES: Final = 16 * KiB
#: Text BatchBridge keeps from a provider about one chunk: its status word, and a status report's facts.
MAX_PROVIDER_STATUS_CHARS: Final = 256
MAX_REPORT_BYTES: Final = 8 * KiB
#: An error's code and message, as recorded.
MAX_ERROR_CODE_CHARS: Final = 200
MAX_ERROR_MESSAGE_CHARS: Final = 2000
#: Retries of one batch (each a new batch linked to it).
MAX_RETRIES: Final = 100
