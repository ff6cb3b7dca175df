"""Record a real RabbitMQ 3.9+ server log under connection churn, for the bench and for checking
that the generated `rabbitmq` shape looks like the real thing.

    python bench/record_rabbit_churn.py [CONNECTIONS] [OUT] [--log=/var/log/rabbitmq/rabbit@HOST.log]

Opens CONNECTIONS short-lived AMQP connections to the local broker (guest/guest on 127.0.0.1:5672)
with py-amqp, as publishers do; one in ten drops its socket without closing the AMQP connection
(the broker logs ``client unexpectedly closed TCP connection``). The broker's log lines written
meanwhile are copied to OUT (default bench/data/rabbit-churn.log), and OUT.truth.json says how
many abrupt closes this run made and how many the broker logged (each one connection's failure).
Other clients of a shared broker add their own lines.
"""

from __future__ import annotations

import glob
import json
import socket
import sys
import time
from pathlib import Path

import amqp

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--log")]
    log_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--log=")), None)
    count = int(args[0]) if args else 2000
    out = Path(args[1]) if len(args) > 1 else ROOT / "bench" / "data" / "rabbit-churn.log"
    logs = [log_arg] if log_arg else sorted(glob.glob("/var/log/rabbitmq/rabbit@*.log"))
    logs = [p for p in logs if not p.endswith("_upgrade.log")]
    if not logs:
        print("no RabbitMQ log found: give --log=PATH", file=sys.stderr)
        return 2
    log = Path(logs[0])
    start = log.stat().st_size
    abrupt = 0
    for k in range(count):
        conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", connect_timeout=5)
        conn.connect()
        if k % 10 == 9:  # a publisher that exits without closing
            sock = conn.transport.sock
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            abrupt += 1
        else:
            conn.close()
    time.sleep(1.0)  # the broker logs the last closes
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("rb") as src:
        src.seek(start)
        data = src.read()
    out.write_bytes(data)
    # what the broker said, not what we did: a socket dropped during the handshake is logged otherwise
    logged = data.count(b"client unexpectedly closed TCP connection")
    truth = {"shape": "rabbit-churn (recorded)", "connections": count, "abrupt_closes": abrupt,
             "injected": logged, "kind": "client_closed_abruptly",
             "anchor": "client unexpectedly closed TCP connection", "files": [str(out)],
             "gz": False, "broker_log": str(log)}
    out.with_name(out.name + ".truth.json").write_text(json.dumps(truth, indent=1))
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
