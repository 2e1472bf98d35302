"""The `flask --app wsgi dni ...` commands."""

from __future__ import annotations

import re

from factories import numbers, post_session


def run(app, *args):
    return app.test_cli_runner().invoke(args=["dni", *args])


def test_create_site_pool_import_and_status(app, tmp_path):
    result = run(app, "create-site", "Radio Co", "--domain", "radio.example",
                 "--keyword-param", "kw")
    assert result.exit_code == 0, result.output
    key = re.search(r"key (site_\S+)", result.output).group(1)

    result = run(app, "create-pool", "--site", key, "--name", "Main", "--target",
                 "(800) 555-0100", "--destination", "+12125550199", "--rules",
                 '[{"source": "google"}]')
    assert result.exit_code == 0, result.output
    pool_id = re.search(r"pool (\d+) created", result.output).group(1)

    csv_file = tmp_path / "numbers.csv"
    good = numbers(5)
    csv_file.write_text("label,number\n" + "".join(f"line {i},{n}\n" for i, n in enumerate(good))
                        + "broken,12345\ndup," + good[0] + "\n\nlast,(650) 555-0199\n")
    result = run(app, "import-numbers", pool_id, str(csv_file))
    assert result.exit_code == 0, result.output
    assert "6 accepted, 2 rejected" in result.output
    assert "line 7: '12345'" in result.output
    assert "line 8" in result.output and "listed twice" in result.output

    result = run(app, "pool-status", pool_id)
    assert result.exit_code == 0, result.output
    assert "6 idle" in result.output and "0 leased" in result.output


def test_import_reports_numbers_already_in_another_pool(app, admin, tmp_path):
    site = admin.post("/v1/sites", json={"name": "S"}).json
    first = admin.post("/v1/pools", json={"site": site["key"], "name": "A",
                                           "target": "+18005550100",
                                           "destination": "+12125550199",
                                           "numbers": numbers(1)}).json
    second = admin.post("/v1/pools", json={"site": site["key"], "name": "B",
                                            "target": "+18005550102",
                                            "destination": "+12125550199"}).json
    csv_file = tmp_path / "n.csv"
    csv_file.write_text(f"{numbers(1)[0]}\n{numbers(2)[1]}\n")
    result = run(app, "import-numbers", str(second["id"]), str(csv_file))
    assert "1 accepted, 1 rejected" in result.output
    assert f"already in pool {first['id']}" in result.output


def test_worker_once_records_events(app, admin, client):
    site = admin.post("/v1/sites", json={"name": "S"}).json
    admin.post("/v1/pools", json={"site": site["key"], "name": "A", "target": "+18005550100",
                                  "destination": "+12125550199", "numbers": numbers(2)})
    post_session(client, site["key"])
    result = run(app, "worker", "--once")
    assert result.exit_code == 0 and "recorded 1 events" in result.output


def test_errors_are_clear(app, tmp_path):
    assert "no pool 42" in run(app, "import-numbers", "42", __file__).output
    assert "no site" in run(app, "create-pool", "--site", "nope", "--name", "x", "--target",
                            "+18005550100", "--destination", "+12125550199").output
    assert "no pools yet" in run(app, "pool-status").output


def test_import_calls_reports_each_row(app, admin, tmp_path):
    site = admin.post("/v1/sites", json={"name": "S"}).json
    admin.post("/v1/static-numbers", json={"number": "+18005550102", "source": "print",
                                           "medium": "offline", "destination": "+12125550199"})
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text(
        "call_id,from,to,started_at,duration,status\n"
        "c1,+14158675309,+18005550102,2026-05-04T14:00:00Z,75,completed\n"
        "c2,+14158675309,+12125550123,2026-05-04T15:00:00Z,10,completed\n"
        "c3,+14158675309,+18005550102,not a time,10,completed\n"
        "c1,+14158675309,+18005550102,2026-05-04T14:00:00Z,75,completed\n")
    result = run(app, "import-calls", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "1 attributed, 1 unattributed, 1 repeated, 1 rejected" in result.output
    assert "line 2: c1: static (print/offline)" in result.output
    assert "line 4: rejected: started_at" in result.output
    assert "line 5: c1: already imported" in result.output
    assert len(admin.get("/v1/calls").json["calls"]) == 2
    assert site["key"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,caller\n1,2\n")
    assert "needs the columns call_id, from, to, started_at" in run(
        app, "import-calls", str(bad)).output
