"""`python -m payhub.bench --quick` still works: it starts payhub on SQLite, drives it over gRPC and
produces the table (terminal and Markdown file) with throughput and without errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from payhub.bench.__main__ import parse
from payhub.bench.runner import run

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_quick_bench_produces_the_table_with_throughput_and_no_errors(tmp_path: Path) -> None:
    # A light load: this proves the harness works end to end, it is not a stress test.
    options = parse(["--quick", "--db", "sqlite", "--scenarios", "pay,get", "--clients", "1", "--concurrency", "4",
                     "--duration", "1", "--warmup", "0.3", "--rate", "20", "--output", str(tmp_path)])

    report = run(options)

    rows = {row.name: row for row in report.rows}
    for name in ("pay", "get", "pay @20/s", "ceiling: Health/Check grpc.aio"):
        assert name in rows, report.text()
        assert rows[name].rate, report.text()
        assert rows[name].errors == 0, report.text()
    assert rows["pay"].rpc_ceiling and rows["pay"].commit_ceiling and rows["pay"].ceiling_ratio
    assert rows["ceiling: 1-row commits x8"].rate
    half = f"pay @{round(rows['pay'].rate / 2):g}/s"  # type: ignore[operator]
    assert half in rows and rows[half].rate, report.text()  # latency when not saturated

    text = report.text()
    assert text.splitlines()[0].split()[:3] == ["db", "scenario", "ops/s"]
    assert any(line.startswith("sqlite") and " pay " in f" {line} " for line in text.splitlines())
    markdown = report.write(tmp_path).read_text()
    assert "| sqlite | pay |" in markdown
    assert "cores" in markdown and "grpcio" in markdown
