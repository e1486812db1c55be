"""Structured log lines: the ids a record carries (node, session, job, pool) travel as fields.

Call sites pass them with ``extra={"node_id": ...}``; text output appends ``key=value`` pairs,
``LOG_FORMAT=json`` prints one JSON object per line. Audio never goes into a record.
"""

from __future__ import annotations

import json
import logging
import time

BOUND_FIELDS = ("node_id", "session_id", "job_id", "pool", "trace_id", "code", "attempt_id", "room")


class StructuredFormatter(logging.Formatter):
    def __init__(self, json: bool = False) -> None:
        super().__init__()
        self.as_json = json

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name) for name in BOUND_FIELDS if hasattr(record, name)}
        message = record.getMessage()
        if self.as_json:
            entry = {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
                **fields,
            }
            if record.exc_info:
                entry["exc"] = self.formatException(record.exc_info)
            return json.dumps(entry, default=str)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {message}"
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
