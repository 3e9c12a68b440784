import json

from twagent import audit, logs
from twagent.messages import CommandRequest, CommandResponse


def test_audit_line_has_fields_and_redacts_before_cutting(tmp_path):
    secret = "audit-secret-token-123"
    logs.add_secret(secret)
    log = audit.AuditLog(str(tmp_path / "a.jsonl"))
    command = "x" * (audit.AUDIT_COMMAND_CHARS - 5) + secret
    log.started(CommandRequest("r1", command))
    log.finished(CommandResponse("r1", b"out", 7))
    log.finished(CommandResponse("unknown", b"", 0))
    log.close()
    first, second = [
        json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()
    ]
    assert secret not in first["command"] and "audit-secr" not in first["command"]
    assert first["exitStatus"] == 7 and first["outputBytes"] == 3
    assert first["command"].endswith("...")
    assert second["seconds"] is None
