"""sendMail outbox, faults, the request log, $batch, state and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.simulator.conftest import DEMO, ROOT, Client, gid, uid

MAIL = {
    "message": {
        "subject": "Seats low",
        "body": {"contentType": "Text", "content": "POWER_BI_PRO has 0 free seats."},
        "toRecipients": [{"emailAddress": {"address": "it@contoso.com"}}],
    },
    "saveToSentItems": False,
}


def test_send_mail_lands_in_the_outbox(client: Client) -> None:
    reply = client.post("/v1.0/users/user1@contoso.com/sendMail", MAIL)
    assert reply.status == 202 and reply.text == ""
    outbox = client.get("/_sim/outbox", auth=None).json["value"]
    assert outbox[0]["from"] == "user1@contoso.com"
    assert outbox[0]["message"] == MAIL["message"] and outbox[0]["saveToSentItems"] is False


def test_send_mail_accepts_the_python_sdks_pascal_case_parameters(client: Client) -> None:
    sdk_body = {"Message": {"@odata.type": "#microsoft.graph.message", **MAIL["message"]}}
    sdk_body["SaveToSentItems"] = False
    assert client.post(f"/v1.0/users/{uid(1)}/sendMail", sdk_body).status == 202
    sent = client.get("/_sim/outbox", auth=None).json["value"][0]
    assert sent["message"]["subject"] == "Seats low" and sent["saveToSentItems"] is False


def test_send_mail_validation_and_permission(client: Client) -> None:
    no_to = {"message": {**MAIL["message"], "toRecipients": []}}
    assert client.post(f"/v1.0/users/{uid(1)}/sendMail", no_to).json["error"]["code"] == (
        "ErrorInvalidRecipients"
    )
    bad = {"message": {**MAIL["message"], "toRecipients": [{"emailAddress": {"address": "x"}}]}}
    assert client.post(f"/v1.0/users/{uid(1)}/sendMail", bad).status == 400
    assert client.post(f"/v1.0/users/{uid(1)}/sendMail", {"nope": 1}).status == 400
    assert (
        client.post(f"/v1.0/users/{uid(1)}/sendMail", MAIL, roles=("User.Read.All",)).status == 403
    )
    assert client.get("/_sim/outbox", auth=None).json["value"] == []


def test_faults_fail_the_next_matching_requests(client: Client) -> None:
    fault = {"path": "/members", "status": 503, "count": 2}
    assert client.call("POST", "/_sim/faults", body=fault, auth=None).status == 201
    path = f"/v1.0/groups/{gid(1)}/members"
    first = client.get(path)
    assert first.status == 503 and first.json["error"]["code"] == "serviceNotAvailable"
    assert client.get("/v1.0/groups").status == 200  # not matching
    assert client.get(path).status == 503
    assert client.get(path).status == 200
    client.call(
        "POST", "/_sim/faults", body={"path": "groups", "status": 429, "count": 5}, auth=None
    )
    throttled = client.get("/v1.0/groups")
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "1"
    client.call("DELETE", "/_sim/faults", auth=None)
    assert client.get("/v1.0/groups").status == 200


def test_request_log_records_status_and_resource_units(client: Client) -> None:
    client.call("DELETE", "/_sim/requests", auth=None)
    client.get(f"/v1.0/groups/{gid(1)}/members")
    client.get(f"/v1.0/groups/{gid(1)}/transitiveMembers?$select=id&$top=5")
    client.get("/v1.0/subscribedSkus", roles=("User.Read.All",))
    log = client.get("/_sim/requests", auth=None).json["value"]
    assert [(e["path"], e["status"], e["ru"]) for e in log] == [
        (f"/v1.0/groups/{gid(1)}/members", 200, 3),
        (f"/v1.0/groups/{gid(1)}/transitiveMembers", 200, 3),
        ("/v1.0/subscribedSkus", 403, 3),
    ]
    assert log[1]["query"] == "$select=id&$top=5"


def test_throttling_by_resource_units() -> None:
    from tests.simulator.conftest import serve, small_tenant

    server = serve(small_tenant(), ru_limit=5)
    try:
        client = Client(server)
        statuses = [client.get("/v1.0/subscribedSkus").status for _ in range(3)]
        assert statuses == [200, 429, 429]
    finally:
        server.stop()


def test_batch_runs_items_with_dependencies(client: Client) -> None:
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/users/{uid(1)}?$select=id"},
            {"id": "2", "method": "GET", "url": f"/v1.0/groups/{gid(9)}"},
            {"id": "3", "method": "GET", "url": "/subscribedSkus", "dependsOn": ["2"]},
            {"id": "4", "method": "GET", "url": f"{client.url}/v1.0/groups/{gid(1)}?$select=id"},
        ]
    }
    reply = client.post("/v1.0/$batch", body)
    assert reply.status == 200
    statuses = {r["id"]: r["status"] for r in reply.json["responses"]}
    assert statuses == {"1": 200, "2": 404, "3": 424, "4": 200}
    log = client.get("/_sim/requests", auth=None).json["value"]
    assert sum(1 for e in log if e["batch"]) == 3
    too_many = {"requests": [{"id": str(i), "method": "GET", "url": "/groups"} for i in range(21)]}
    assert client.post("/v1.0/$batch", too_many).status == 400


def test_state_carries_derived_fields(client: Client) -> None:
    state = client.state()
    assert state["skus"][0]["consumedUnits"] == 2
    user = next(u for u in state["users"] if u["id"] == uid(1))
    assert len(user["assignedLicenses"]) == 2 and len(user["licenseAssignmentStates"]) == 2


def test_cli_serves_prints_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", "--port", "0", "--tenant", str(DEMO)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        import urllib.request

        with urllib.request.urlopen(line.split(" on ")[1] + "/_sim/health", timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_cli_refuses_non_loopback_host_and_bad_tenant(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "simulator", "serve", "--tenant", str(DEMO), "--host", "0.0.0.0"]
    refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert refused.returncode != 0 and "loopback" in refused.stderr
    bad = tmp_path / "t.json"
    bad.write_text('{"tenantId": "nope"}')
    cmd = [sys.executable, "-m", "simulator", "serve", "--tenant", str(bad)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and "$.tenantId: not a GUID" in result.stderr
