"""Streaming validation of uploaded files (batchbridge.uploads.FileCheck), on bytes made here: good files,
bad lines, huge lines, wrong encodings, CSV quirks, the CSV mapping for every provider's job shape, and the
limits (problems reported, jobs per batch, the invocation's time)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from batchbridge import uploads
from batchbridge.providers.base import provider_class
from batchbridge.uploads import MAX_LINE_BYTES, FileCheck, _lines
from batchbridge_local.simulators.ivvy import booking_session_jobs

WILLSUITE_ID = "5f0c7a2e-1b3d-4c5e-8f9a-0b1c2d3e4f5a"


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """The file as S3 would stream it, in pieces that cut lines anywhere."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def check(
    provider: str, fmt: str, data: bytes, chunk: int = 64 * 1024, **kwargs: Any
) -> tuple[FileCheck, list[Any]]:
    file_check = FileCheck(provider_class(provider), fmt, **kwargs)
    out = [json.loads(line) for line in file_check.run(chunked(data, chunk))]
    return file_check, out


def jsonl(jobs: list[Any]) -> bytes:
    return b"".join(json.dumps(job).encode() + b"\n" for job in jobs)


def fields(file_check: FileCheck) -> list[str]:
    return [d["field"] for d in file_check.error["details"]]


# --- the line reader ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
def test_lines_are_the_same_whatever_the_chunks(size):
    data = b"a\r\nbb\n\nccc\nlast-without-newline"
    assert list(_lines(chunked(data, size), 100)) == [
        (1, b"a"),
        (2, b"bb"),
        (3, b""),
        (4, b"ccc"),
        (5, b"last-without-newline"),
    ]


@pytest.mark.parametrize("size", [5, 16, 1000])
def test_a_line_over_the_limit_comes_as_none_and_the_next_lines_keep_their_numbers(size):
    data = b"ok\n" + b"x" * 50 + b"\nafter\n" + b"y" * 50
    assert list(_lines(chunked(data, size), 20)) == [(1, b"ok"), (2, None), (3, b"after"), (4, None)]


# --- JSON Lines ----------------------------------------------------------------------------------------
def test_a_good_file_gives_every_job_in_order():
    jobs = booking_session_jobs(500)
    file_check, out = check("ivvy", "jsonl", jsonl(jobs), chunk=333)
    assert not file_check.problems
    assert file_check.job_count == 500
    assert out == jobs


def test_blank_lines_a_bom_and_crlf_are_tolerated_and_left_out_of_the_jobs_file():
    jobs = booking_session_jobs(3)
    data = b"\xef\xbb\xbf" + jsonl(jobs[:1]).replace(b"\n", b"\r\n") + b"\n  \n" + jsonl(jobs[1:])
    file_check, out = check("ivvy", "jsonl", data, chunk=10)
    assert not file_check.problems
    assert out == jobs


def test_bad_lines_are_named_by_line_number_and_field():
    good = booking_session_jobs(2)
    lines = [
        json.dumps(good[0]),
        json.dumps({"namespace": "venue", "action": "addOrUpdateBookingSession", "params": [], "x": 1}),
        "not json at all",
        "[1, 2]",
        json.dumps({**good[1], "namespace": "batch"}),
    ]
    file_check, out = check("ivvy", "jsonl", "\n".join(lines).encode())
    assert out == [good[0]]  # nothing after the first problem goes out
    assert fields(file_check) == ["line 2: params", "line 2: x", "line 3", "line 4", "line 5: namespace"]
    messages = [d["message"] for d in file_check.error["details"]]
    assert messages[2].startswith("not valid JSON")
    assert "batch namespace" in messages[4]
    assert file_check.error["code"] == "INVALID_FILE"
    assert file_check.error["message"].startswith("the file was refused: 5 problem(s); first: line 2: params")


def test_at_most_twenty_problems_are_reported_and_reading_stops_there():
    data = b"{}\n" * 100_000
    file_check, _ = check("ivvy", "jsonl", data)
    assert len(file_check.error["details"]) == 20
    assert file_check.job_count < 100  # it stopped reading, not merely reporting
    assert "stopped after 20 problems" in file_check.error["message"]


def test_a_huge_line_is_refused_without_being_held_and_the_rest_still_checked():
    job = booking_session_jobs(1)[0]
    huge = {**job, "params": {"notes": "x" * (MAX_LINE_BYTES + 10)}}
    data = jsonl([job, huge, {"namespace": 5}])
    file_check, _ = check("ivvy", "jsonl", data, chunk=4096)
    assert fields(file_check)[:2] == ["line 2", "line 3: namespace"]
    assert "longer than 64 KiB" in file_check.error["details"][0]["message"]


def test_a_file_not_in_utf8_is_refused_naming_the_line_and_the_byte():
    job = booking_session_jobs(1)[0]
    text = json.dumps({**job, "params": {"name": "Café"}}, ensure_ascii=False)
    latin1 = jsonl([job]) + text.encode("latin-1") + b"\n"
    file_check, _ = check("ivvy", "jsonl", latin1)
    assert fields(file_check) == ["line 2"]
    assert "not UTF-8 text (byte 0xe9" in file_check.error["details"][0]["message"]


def test_a_utf16_file_is_refused_at_its_first_line():
    file_check, _ = check("ivvy", "jsonl", jsonl(booking_session_jobs(2)).decode().encode("utf-16"))
    assert fields(file_check)[0] == "line 1"
    assert "UTF-8" in file_check.error["details"][0]["message"]


def test_an_empty_file_is_refused():
    for data in (b"", b"\n\n \n"):
        file_check, _ = check("ivvy", "jsonl", data)
        assert file_check.error["details"] == [{"field": "file", "message": "the file has no jobs"}]


def test_more_jobs_than_a_batch_holds_is_refused_at_the_first_job_too_many():
    file_check, _ = check("ivvy", "jsonl", jsonl(booking_session_jobs(30)), max_jobs=25)
    assert file_check.error["details"] == [
        {"field": "line 26", "message": "the file has more than 25 jobs, the most a ivvy batch holds"}
    ]


def test_the_providers_own_limit_applies_when_lower_than_the_upload_limit():
    cls = provider_class("ivvy")
    assert FileCheck(cls, "jsonl").max_jobs == min(uploads.MAX_JOBS, cls.capabilities.max_jobs_per_batch)


def test_validation_that_would_outrun_the_invocation_refuses_the_file_instead():
    left = iter([500.0, 10.0])
    file_check, _ = check("ivvy", "jsonl", jsonl(booking_session_jobs(2500)), seconds_left=lambda: next(left))
    assert file_check.job_count == 2000  # the time left is read at each 1,000 jobs; stopped at the second
    assert "split it into smaller files" in file_check.error["details"][0]["message"]


def test_batch_wide_checks_run_when_the_options_are_known():
    create = {"uniqueCode": "D-1", "name": "Driver one"}
    update = {"id": "driver:0b0e0a8c-57f7-4ba0-9a3c-0d3bb5e2a2a1"}
    data = jsonl([create, create | {"uniqueCode": "D-2"}, update])
    without, _ = check("os1", "jsonl", data)
    assert not without.problems  # each line is a valid OS1 record of some shape
    with_options, _ = check(
        "os1", "jsonl", data, options={"participantType": "drivers", "operation": "create"}
    )
    assert fields(with_options) == ["line 3"]
    assert "operation is 'create'" in with_options.error["details"][0]["message"]


def test_batch_wide_checks_map_window_positions_back_to_file_lines(monkeypatch):
    monkeypatch.setattr(uploads, "BATCH_CHECK_WINDOW", 4)
    create = {"uniqueCode": "D", "name": "n"}
    update = {"id": "driver:0b0e0a8c-57f7-4ba0-9a3c-0d3bb5e2a2a1"}
    jobs = [create | {"uniqueCode": f"D-{i}"} for i in range(9)]
    jobs[6] = update
    file_check, out = check("os1", "jsonl", jsonl(jobs), options={"participantType": "drivers"})
    assert fields(file_check) == ["line 7"]
    good, out = check("os1", "jsonl", jsonl(jobs[:6]), options={"participantType": "drivers"})
    assert out == jobs[:6] and not good.problems


# --- CSV -----------------------------------------------------------------------------------------------
def to_csv(rows: list[list[str]], newline: str = "\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue().encode()


def test_csv_columns_are_field_paths_and_cells_json_where_json():
    data = to_csv(
        [
            [
                "clientRef",
                "namespace",
                "action",
                "params.bookingId",
                "params.name",
                "params.setupTime",
                "params.tags",
            ],
            ["1001", "venue", "addOrUpdateBookingSession", "15722", "Keynote, day 1", '"30"', '["a","b"]'],
            ["1002", "venue", "addOrUpdateBookingSession", "15723", "", "true", ""],
        ]
    )
    file_check, out = check("ivvy", "csv", data)
    assert not file_check.problems
    assert out == [
        {
            "clientRef": "1001",  # declared text: kept as written, not the number 1001
            "namespace": "venue",
            "action": "addOrUpdateBookingSession",
            "params": {"bookingId": 15722, "name": "Keynote, day 1", "setupTime": "30", "tags": ["a", "b"]},
        },
        {
            "clientRef": "1002",
            "namespace": "venue",
            "action": "addOrUpdateBookingSession",
            "params": {"bookingId": 15723, "setupTime": True},  # empty cells leave the field out
        },
    ]


@pytest.mark.parametrize(
    ("provider", "job"),
    [
        (
            "ivvy",
            {
                "clientRef": "007",
                "namespace": "venue",
                "action": "addOrUpdateBookingSession",
                "params": {"spaceVenueId": 1, "bookingId": 15722, "name": "Talk", "startDate": "2026-03-02"},
            },
        ),
        ("willsuite", {"clientRef": "c-1", "id": WILLSUITE_ID, "status": "open", "priority": 3}),
        ("superoffice", {"clientRef": "42", "id": 4711}),
        ("os1", {"clientRef": "r1", "uniqueCode": "0042", "name": "Driver", "properties": {"licence": "B"}}),
        ("os1", {"id": "driver:0b0e0a8c-57f7-4ba0-9a3c-0d3bb5e2a2a1", "properties": {"active": False}}),
    ],
)
def test_every_providers_job_shape_can_be_written_as_csv(provider, job):
    def flat(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict) and item:
                out |= flat(item, f"{prefix}{key}.")
            else:
                out[prefix + key] = item
        return out

    cells = flat(job)
    text = uploads._text_fields(provider_class(provider).job_model)
    row = [str(v) if k in text else json.dumps(v) if not isinstance(v, str) else v for k, v in cells.items()]
    file_check, out = check(provider, "csv", to_csv([list(cells), row]))
    assert not file_check.problems, file_check.error
    assert out == [job]


def test_csv_quirks_bom_crlf_quoted_newlines_and_blank_rows():
    rows = [
        ["clientRef", "namespace", "action", "params.name"],
        ["a", "venue", "addOrUpdateBookingSession", "two\nlines"],
        ["b", "venue", "addOrUpdateBookingSession", 'say "hi"'],
    ]
    data = b"\xef\xbb\xbf" + to_csv(rows, "\r\n") + b"\r\n" + to_csv([["c", "venue", "x!", "n"]], "\r\n")
    file_check, out = check("ivvy", "csv", data, chunk=5)
    assert [job["params"]["name"] for job in out[:2]] == ["two\nlines", 'say "hi"']
    # the quoted newline makes the second record span lines 2-3: the third job starts on line 4, and
    # after a blank line 5 the bad one is line 6
    assert fields(file_check) == ["line 6: action"]


def test_a_row_with_the_wrong_number_of_cells_is_named():
    data = to_csv([["clientRef", "namespace", "action"], ["a", "venue"], ["b", "venue", "x", "extra"]])
    file_check, _ = check("ivvy", "csv", data)
    assert file_check.error["details"] == [
        {"field": "line 2", "message": "the row has 2 cells; the header has 3"},
        {"field": "line 3", "message": "the row has 4 cells; the header has 3"},
    ]


@pytest.mark.parametrize(
    ("header", "field", "message"),
    [
        (["clientRef", "clientRef"], "line 1: clientRef", "the column appears twice"),
        (["params", "params.bookingId"], "line 1: params.bookingId", "a field and a field inside it"),
        (["params..x"], "line 1: params..x", "a column name is a field path"),
        ([""], "line 1", "a column name is a field path"),
    ],
)
def test_a_wrong_header_is_refused_before_any_row(header, field, message):
    file_check, out = check("ivvy", "csv", to_csv([header, ["1"] * len(header)]))
    assert out == []
    assert file_check.error["details"][0]["field"] == field
    assert message in file_check.error["details"][0]["message"]


def test_an_unterminated_quote_is_a_csv_problem_not_a_crash():
    data = b'clientRef,namespace,action\n"a,venue,addOrUpdateBookingSession\n'
    file_check, _ = check("ivvy", "csv", data)
    assert file_check.problems
    assert any("CSV" in d["message"] for d in file_check.error["details"])


def test_a_csv_line_not_in_utf8_is_named():
    data = b"clientRef,namespace,action\nb\xe9,venue,addOrUpdateBookingSession\n"
    file_check, _ = check("ivvy", "csv", data)
    assert fields(file_check)[0] == "line 2"
    assert "not UTF-8" in file_check.error["details"][0]["message"]
