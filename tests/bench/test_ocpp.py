"""`python -m bench.ocpp` runs end to end with two connectors and a short outage, and what it reports
holds together: nothing lost, duplicated or reordered, counts consistent.

No timing is asserted (bench/RESULTS.md has the real measurements). Output goes to a file, never a
pipe: the actor system's Admin inherits stdout.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.test_bench_smoke import _positive, _run_json


def test_ocpp_benchmark_smoke(tmp_path: Path) -> None:
    result = _run_json(
        "bench.ocpp",
        ["--connectors", "2", "--outage-min", "0.1", "--meter-interval", "1", "--online-s", "2"],
        tmp_path / "out.txt",
    )
    assert result["connectors"] == 2 and result["outage_s"] == 6.0 and result["meter_interval_s"] == 1
    assert result["date"] and result["machine"]
    # what matters: the outage lost, repeated and reordered nothing, and each bill matches its stream
    assert result["lost"] == 0 and result["discarded"] == 0
    assert result["duplicates"] == 0
    assert result["order_violations"] == 0, result["violations"]
    assert result["transactions"] == 2 and result["bill_mismatches"] == 0
    # a sample taken before the link heard of the stop is reported, not counted as reordering
    assert 0 <= result["samples_after_stop"] <= result["transactions"]
    assert isinstance(result["restarts"], int) and result["restarts"] >= 0  # the park's own business, not asserted
    # the cars charged through the outage, so every connector queued sampled MeterValues and nothing else
    by_action = result["queued_by_action"]
    assert by_action["StartTransaction"] == by_action["StopTransaction"] == 0
    assert by_action["MeterValues"] == result["queued_at_reconnect"] >= 2
    assert result["answered_in_drain"] >= result["queued_at_reconnect"]
    assert result["meter_values_total"] >= result["queued_at_reconnect"]
    assert result["raw_ocpp_messages"] == by_action["MeterValues"]
    _positive(
        result,
        ["reconnect_s", "drain_s", "drain_after_connect_s", "rate_msgs_per_s", "raw_ocpp_rate_msgs_per_s"],
    )
    _positive(result, ["ratio_link_raw", "online_meter_values", "online_latency_p50_ms", "loadavg_1m_at_start"])
    assert result["drain_s"] >= result["drain_after_connect_s"]
