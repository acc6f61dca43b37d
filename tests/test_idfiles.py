"""Reading id sources: text, CSV, JSON lines/documents, gzip, stdin, and every kind of bad input."""

import gzip
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.idfiles import IdBatch, IdFileError, Rejection, read_ids, read_many

UTC = UTC
ANCHOR = datetime(2026, 1, 21, 7, 0, tzinfo=UTC)
A = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
B = "j0120101010100000001t-u777-a12345678901234-bot:mureka"
C = "j1231235959999000002m-u777-a1-bot:mureka"


def read(name: str, data: bytes) -> IdBatch:
    return read_ids(name, data, anchor=ANCHOR)


def jobids(batch: IdBatch) -> list[str]:
    return [j.jobid for j in batch.ids]


def reasons(batch: IdBatch) -> list[tuple[int | None, str]]:
    return [(r.line, r.reason) for r in batch.rejections]


def test_plain_text_with_blank_lines_whitespace_and_mixed_line_ends():
    data = f"{A}\r\n\r\n   \t\n  {B}  \r{C}\n\n".encode()
    batch = read("ids.txt", data)
    assert jobids(batch) == [A, B, C]
    assert batch.rejections == []
    assert batch.lines_read == 6
    assert batch.duplicates_in_input == 0


def test_years_resolved_from_the_anchor():
    batch = read("ids.txt", f"{A}\n{C}\n".encode())
    assert [j.created_at.year for j in batch.ids] == [2026, 2025]


def test_duplicates_are_counted_not_repeated():
    batch = read("ids.txt", f"{A}\n{B}\n{A}\n {A} \n".encode())
    assert jobids(batch) == [A, B]
    assert batch.duplicates_in_input == 2


def test_malformed_ids_are_rejected_with_line_and_reason():
    lines = [
        A,
        "hello",
        "../" + A,
        A.replace(":", "/"),
        A + "?x",
        A + "#y",
        A.replace(":", "%2F"),
        A.replace(":", "%3A"),
        "j0230061432017475905m-u777-a1-bot:mureka",
        "x" * 5000,
        B,
    ]
    batch = read("ids.txt", "\n".join(lines).encode())
    assert jobids(batch) == [A, B]
    bad_chars = "contains characters that cannot appear in a job id"
    got = reasons(batch)
    assert got[0] == (2, got[0][1]) and got[0][1].startswith("does not match")
    assert got[1:7] == [(n, bad_chars) for n in range(3, 9)]
    assert got[7][0] == 9 and got[7][1].startswith("impossible creation date")
    assert got[8][0] == 10 and got[8][1].startswith("too long")
    assert all(len(r.text) <= 80 for r in batch.rejections)
    assert str(batch.rejections[1]) == f"ids.txt:3: {bad_chars}: ../{A}"


def test_over_long_line_is_not_echoed_whole():
    batch = read("ids.txt", b"j" * 1_000_000)
    (rejection,) = batch.rejections
    assert rejection.reason.startswith("too long")
    assert len(rejection.text) <= 80
    assert len(str(rejection)) < 200


def test_invalid_utf8_rejects_only_that_line():
    batch = read("ids.txt", A.encode() + b"\n\xc3\x28bad\xff\n" + B.encode() + b"\n")
    assert jobids(batch) == [A, B]
    (rejection,) = batch.rejections
    assert (rejection.line, rejection.reason) == (2, "not valid UTF-8")
    assert rejection.text.isprintable()


def test_control_characters_are_shown_escaped():
    batch = read("ids.txt", b"j01\x1b[31mred\n")
    (rejection,) = batch.rejections
    assert rejection.text == "j01\\x1b[31mred"


def test_binary_file_is_an_error(tmp_path: Path):
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(IdFileError, match="photo.txt: binary file"):
        read_ids(path, anchor=ANCHOR)


def test_unreadable_and_missing_files_are_errors(tmp_path: Path):
    with pytest.raises(IdFileError, match="missing.txt: cannot read"):
        read_ids(tmp_path / "missing.txt", anchor=ANCHOR)
    with pytest.raises(IdFileError, match="cannot read"):
        read_ids(tmp_path, anchor=ANCHOR)


def test_empty_file_gives_an_empty_batch():
    for name in ("ids.txt", "ids.csv", "ids.jsonl"):
        batch = read(name, b"")
        assert (batch.ids, batch.rejections, batch.lines_read) == ([], [], 0)


def test_csv_with_jobid_column():
    data = (
        "status,JobId ,note\r\n"
        f'done,{A},"a, quoted\nmulti-line note"\r\n'
        "\r\n"
        f"running, {B} ,x\r\n"
        ",,\r\n"
        "short\r\n"
        "x,not-an-id,y\r\n"
        f"z,{A},dup\r\n"
    ).encode()
    batch = read("export.csv", data)
    assert jobids(batch) == [A, B]
    assert batch.duplicates_in_input == 1
    assert reasons(batch)[0] == (7, "row has no jobid field")
    assert reasons(batch)[1][0] == 8 and reasons(batch)[1][1].startswith("does not match")


def test_csv_detected_by_content_with_other_delimiters():
    assert jobids(read("ids.txt", f"created;jobid\n2026;{A}\n".encode())) == [A]
    assert jobids(read("-", f"jobid\n{A}\n{B}\n".encode())) == [A, B]


def test_csv_without_jobid_column_is_an_error():
    with pytest.raises(IdFileError, match=r"list.csv: CSV without a jobid column \(header: id,status\)"):
        read("list.csv", f"id,status\n{A},done\n".encode())


def test_csv_invalid_utf8_in_the_jobid_cell_or_elsewhere():
    data = b"jobid,note\n" + A.encode() + b",caf\xe9\n\xff" + B.encode() + b",x\n" + B.encode() + b",y\n"
    batch = read("ids.csv", data)
    assert jobids(batch) == [A, B]
    assert reasons(batch) == [(3, "not valid UTF-8")]


def test_csv_oversized_field_is_rejected_and_reading_goes_on():
    data = b"jobid,note\n" + A.encode() + b',"' + b"x" * 200_000 + b'"\n' + B.encode() + b",ok\n"
    batch = read("ids.csv", data)
    assert jobids(batch) == [B]
    (rejection,) = batch.rejections
    assert rejection.line == 2 and rejection.reason.startswith("unreadable CSV row")
    assert rejection.text.startswith(A) and len(rejection.text) == 80


def test_json_lines_of_records_and_webhooks():
    lines = [
        json.dumps({"jobid": A, "status": "completed", "created": "2026-01-21T06:14:32.017Z"}),
        "",
        json.dumps({"jobid": C, "created": "2025-12-31T23:59:59.999Z", "request": {"replyRef": "x"}}),
        "[1, 2]",
        json.dumps({"id": A}),
        json.dumps({"jobid": 12345}),
        "{not json",
        json.dumps({"jobid": "../etc/passwd"}),
        json.dumps({"jobid": B, "created": "garbage"}),
    ]
    batch = read("hooks.jsonl", "\n".join(lines).encode())
    assert jobids(batch) == [A, C, B]
    assert reasons(batch) == [
        (4, "JSON value is not an object"),
        (5, "JSON object has no string jobid"),
        (6, "JSON object has no string jobid"),
        (7, "not valid JSON"),
        (8, "contains characters that cannot appear in a job id"),
    ]


def test_json_created_anchors_the_year():
    # Read in 2027, the record's created puts the December id in 2025, not 2026.
    record = {"jobid": C, "created": "2026-01-02T00:00:00Z"}
    batch = read_ids("old.ndjson", json.dumps(record).encode(), anchor=datetime(2027, 6, 1, tzinfo=UTC))
    assert batch.ids[0].created_at.year == 2025


def test_json_created_out_of_range_does_not_crash():
    records = [
        {"jobid": C, "created": "9999-12-31T23:59:59+00:00"},
        {"jobid": C, "created": "0001-01-01T00:00:00-05:00"},
    ]
    batch = read("odd.jsonl", "\n".join(json.dumps(r) for r in records).encode())
    assert batch.ids == []
    assert [r.line for r in batch.rejections] == [1, 2]
    assert "out of range" in batch.rejections[0].reason


def test_json_array_and_pretty_printed_payload():
    array = json.dumps([{"jobid": A}, {"jobid": B}, "x"], indent=2).encode()
    batch = read("dump.json", array)
    assert jobids(batch) == [A, B]
    assert reasons(batch) == [(None, "JSON value is not an object")]
    assert str(batch.rejections[0]) == "dump.json: JSON value is not an object: item 2"
    payload = json.dumps({"jobid": A, "status": "created"}, indent=2).encode()
    assert jobids(read("payload.txt", b"\n" + payload)) == [A]


def test_json_detected_by_content():
    assert jobids(read("-", json.dumps({"jobid": A}).encode())) == [A]


def test_gzip_by_magic_bytes(tmp_path: Path):
    path = tmp_path / "ids.csv.gz"
    path.write_bytes(gzip.compress(f"jobid\n{A}\n".encode()))
    assert jobids(read_ids(path, anchor=ANCHOR)) == [A]
    renamed = tmp_path / "ids.bin"
    renamed.write_bytes(gzip.compress(f"{B}\n".encode()))
    assert jobids(read_ids(renamed, anchor=ANCHOR)) == [B]


def test_corrupt_gzip_and_gzipped_binary_are_errors():
    with pytest.raises(IdFileError, match="corrupt gzip"):
        read("ids.gz", gzip.compress(A.encode())[:15])
    with pytest.raises(IdFileError, match="binary"):
        read("ids.gz", gzip.compress(b"\x00\x01\x02"))


def test_utf16_and_utf8_bom_text():
    assert jobids(read("win.txt", f"\ufeff{A}\r\n{B}\r\n".encode("utf-16"))) == [A, B]
    assert jobids(read("bom.csv", f"\ufeffjobid\n{A}\n".encode())) == [A]


def test_rejection_str_format():
    assert str(Rejection("file.txt", 12, "not valid UTF-8", "\\xff")) == "file.txt:12: not valid UTF-8: \\xff"


def test_read_many_merges_deduplicates_and_lists_unusable_files(tmp_path: Path):
    first = tmp_path / "a.txt"
    first.write_text(f"{A}\n{B}\n")
    binary = tmp_path / "b.dat"
    binary.write_bytes(b"\x00" * 10)
    batch, errors = read_many(
        [str(first), str(binary), "-", str(tmp_path / "gone.txt")],
        ANCHOR,
        stdin=io.BytesIO(f"{B}\n{C}\nbad id\n".encode()),
    )
    assert jobids(batch) == [A, B, C]
    assert batch.duplicates_in_input == 1
    assert batch.lines_read == 5
    assert [(r.source, r.line) for r in batch.rejections] == [("<stdin>", 3)]
    assert [e.source for e in errors] == [str(binary), str(tmp_path / "gone.txt")]


def test_never_crashes_on_random_bytes():
    rng = random.Random(7)
    pieces = [A.encode(), b"\n", b"\r", b",", b"jobid", b"{", b"}", b'"', b"\xff", b"[", b" ", b"%2F", b"\x1f\x8b"]
    for trial in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        if trial % 3 == 0:
            data += rng.randbytes(rng.randint(0, 64)).replace(b"\x00", b"")
        for name in ("x.txt", "x.csv", "x.jsonl", "-"):
            try:
                batch = read(name, data)
            except IdFileError:
                continue
            assert all(len(r.text) <= 80 and r.text.isprintable() for r in batch.rejections)


def test_a_type_letter_the_api_does_not_issue_is_rejected_at_intake_with_file_and_line():
    other = A.replace("905m-u", "905x-u")
    for name, data in (
        ("ids.txt", f"{A}\n{other}\n{B}\n"),
        ("ids.csv", f"jobid\n{A}\n{other}\n{B}\n"),
        ("ids.jsonl", "\n".join(json.dumps({"jobid": j}) for j in (A, other, B)) + "\n"),
    ):
        batch = read(name, data.encode())
        assert jobids(batch) == [A, B], name
        (rejection,) = batch.rejections
        line = 3 if name == "ids.csv" else 2
        assert str(rejection) == f"{name}:{line}: unknown job type letter 'x' (the API issues m music, t tts): {other}"
