"""The batch's objects in S3: its jobs (JSON Lines), each chunk's outcomes, and the results files.

Object keys, under ``batches/<id>/``:

================================  ======================================================================
``jobs.jsonl``                    the jobs as accepted, one JSON object per line (an upload's jobs live
                                  under ``uploads/<id>/``; the batch record names the key either way)
``outcomes/<chunk>.jsonl``        one chunk's outcomes, one line per job, the job as submitted beside it
``results.jsonl``                 every outcome, chunk by chunk
``results/<kind>.jsonl``          the outcomes of one kind (succeeded, failed, not_processed)
================================  ======================================================================

Nothing here holds a file in memory: reads stream, writes go out as multipart uploads whose parts are
spooled to disk, so memory stays flat whatever a batch's size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

from botocore.exceptions import ClientError

from batchbridge import aws

#: S3's smallest part (but the last); parts are this size, so a 1,000,000-outcome file is ~100 parts.
PART_BYTES = 8 * 1024 * 1024
JSONL = "application/x-ndjson"


def jobs_key(batch_id: str) -> str:
    return f"batches/{batch_id}/jobs.jsonl"


def chunk_outcomes_key(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/outcomes/{index:05d}.jsonl"


def results_key(batch_id: str) -> str:
    return f"batches/{batch_id}/results.jsonl"


def outcome_file_key(batch_id: str, kind: str) -> str:
    return f"batches/{batch_id}/results/{kind}.jsonl"


class ObjectStore:
    """The bucket, behind the few operations the tasks and the API need."""

    def __init__(self, bucket: str, *, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def s3(self) -> Any:
        return self._client if self._client is not None else aws.client("s3")

    def put_bytes(self, key: str, body: bytes | IO[bytes], content_type: str = JSONL) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object (empty when ``start == end``)."""
        if end <= start:
            return b""
        body = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
        return bytes(body.read())

    def stream(self, key: str, piece: int = 1 << 20) -> Iterator[bytes]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        yield from body.iter_chunks(chunk_size=piece)

    def lines(self, key: str) -> Iterator[bytes]:
        """The non-empty lines of a JSON Lines object, streamed."""
        tail = b""
        for piece in self.stream(key):
            *complete, tail = (tail + piece).split(b"\n")
            yield from (line for line in complete if line.strip())
        if tail.strip():
            yield tail

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def presigned_get(self, key: str, seconds: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        signer = self._client if self._client is not None else aws.presigner()  # Signature Version 4
        return str(signer.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    def writer(self, key: str) -> ObjectWriter:
        return ObjectWriter(self, key)

    # --- multipart uploads, for writes that span invocations (tasks/join.py) -------------------------
    def start_upload(self, key: str) -> str:
        return str(
            self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=JSONL)["UploadId"]
        )

    def upload_part(self, key: str, upload_id: str, number: int, body: IO[bytes]) -> str:
        body.seek(0)
        answer = self.s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return str(answer["ETag"])

    def complete_upload(self, key: str, upload_id: str, parts: int) -> None:
        """Complete an upload of parts 1..``parts``, their ETags read back from S3. A no-op for an upload
        S3 no longer knows (an earlier attempt completed it)."""
        listed: list[dict[str, Any]] = []
        marker = 0
        try:
            while True:
                page = self.s3.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
                listed.extend(p for p in page.get("Parts", []) if p["PartNumber"] <= parts)
                if not page.get("IsTruncated"):
                    break
                marker = page["NextPartNumberMarker"]
        except ClientError as exc:
            if _no_such_upload(exc):
                return
            raise
        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]},
        )

    def upload_open(self, key: str, upload_id: str) -> bool:
        """Whether S3 still knows the upload (False once it was completed or aborted)."""
        try:
            self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id, MaxParts=1)
        except ClientError as exc:
            if _no_such_upload(exc):
                return False
            raise
        return True

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort an upload; a no-op for one S3 no longer knows."""
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not _no_such_upload(exc):
                raise


def _no_such_upload(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "NoSuchUpload"


class ObjectWriter:
    """Write one object as a stream: parts of :data:`PART_BYTES` are spooled to disk and uploaded as they
    fill (a multipart upload); an object smaller than one part is a single PUT. Use as a context
    manager: the object exists once the block ends without error, and an error aborts the upload."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store = store
        self.key = key
        self.bytes = 0
        self._part: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close() or abort()
        self._in_part = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if error is None:
            self.close()
        else:
            self.abort()

    def write(self, data: bytes) -> None:
        self._part.write(data)
        self._in_part += len(data)
        self.bytes += len(data)
        if self._in_part >= PART_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._upload_id is None:
            self._upload_id = self.store.start_upload(self.key)
        number = len(self._parts) + 1
        etag = self.store.upload_part(self.key, self._upload_id, number, self._part)
        self._parts.append({"PartNumber": number, "ETag": etag})
        self._part.close()
        self._part = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close() or abort()
        self._in_part = 0

    def close(self) -> None:
        if self._upload_id is None:
            self._part.seek(0)
            self.store.put_bytes(self.key, self._part)
        else:
            if self._in_part:
                self._flush()
            self.store.s3.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._part.close()

    def abort(self) -> None:
        self._part.close()
        if self._upload_id is not None:
            self.store.abort_upload(self.key, self._upload_id)
