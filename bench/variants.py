# ruff: noqa: E501, UP031  (log lines kept whole; %-formatting mirrors the printf-style layouts)
"""Variants of the bench's shapes, written apart from bench/shapes.py on purpose: other densities,
wrappers, messages and randomness, to check that `logs` holds on logs it was not tuned to.

    python bench/variants.py NAME SIZE_MB OUT       (writes OUT and OUT.truth.json)
    python bench/bench_logs.py --shapes "" --recorded OUT.truth.json,...

w-dense: 15% app WARNINGs, 3% of tasks failing on their HTTP upstream with chained tracebacks
(raised, or logged by the task); w-k8s / w-journal / w-ecs: the same at 7% / 1% behind
`kubectl logs --timestamps`, journald's default layout, and ECS JSON; rabbit / rabbit-json:
RabbitMQ 3.12-style lines (client-provided names, 10% abrupt closes) as text and as the JSON
formatter; redis: Redis 7.2 churn with RDB saves, idle and output-buffer closes injected;
c31-dense: Celery 3.1 with one task in five failing with a 3-12 frame Python 2 traceback.
Each injects one failure every few MB, minutes apart.
"""

import json
import random
import sys
import time

R = random.Random(7)
T0 = 1_790_000_000.0


class C:
    def __init__(self):
        self.t = T0

    def tick(self, s):
        self.t += s

    def cel(self):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.t)) + ",%03d" % int(self.t % 1 * 1000)

    def iso(self):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t)) + ".%06dZ" % int(self.t % 1 * 1e6)

    def rab(self):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.t)) + ".%06d+00:00" % int(self.t % 1 * 1e6)

    def red(self):
        return time.strftime("%d %b %Y %H:%M:%S", time.gmtime(self.t)) + ".%03d" % int(self.t % 1 * 1000)


def tid():
    return "%08x-%04x-%04x-%04x-%012x" % (
        R.getrandbits(32),
        R.getrandbits(16),
        R.getrandbits(16),
        R.getrandbits(16),
        R.getrandbits(48),
    )


NAMES = ["billing.tasks.charge", "mail.tasks.send_welcome", "etl.tasks.load_partition", "api.tasks.webhook"]
WARN = [
    "Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f0>: Failed to establish a new connection: [Errno 111] Connection refused')': /hook",
    "Connection pool is full, discarding connection: hooks.example.org. Connection pool size: 10",
    "{n}[{i}]: soft time limit approaching, 3 rows left",
    "/app/billing/models.py:88: RemovedInDjango50Warning: The USE_L10N setting is deprecated.",
    "{n}[{i}]: upstream timeout, Connection reset by peer while reading response; will retry",
    "Task {n}[{i}] retry: Retry in 10s: ConnectionError('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
]
APP_TB = (
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/urllib3/connectionpool.py", line 789, in urlopen\n'
    "    response = self._make_request(\n"
    '  File "/usr/local/lib/python3.12/site-packages/urllib3/connectionpool.py", line 536, in _make_request\n'
    "    response = conn.getresponse()\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
    "\nDuring handling of the above exception, another exception occurred:\n\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/celery/app/trace.py", line 453, in trace_task\n'
    "    R = retval = fun(*args, **kwargs)\n"
    '  File "/app/api/tasks.py", line 31, in webhook\n'
    "    r = session.post(url, json=body, timeout=5)\n"
    "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))\n"
)
LOSS5 = [
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/celery/worker/consumer/consumer.py", line 340, in start\n'
    "    blueprint.start(self)\n"
    '  File "/usr/local/lib/python3.12/site-packages/kombu/transport/redis.py", line 1345, in _read\n'
    "    raise ConnectionError('Connection closed by server.')\n"
    "redis.exceptions.ConnectionError: Connection closed by server.\n",
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/amqp/connection.py", line 522, in channel\n'
    "    return self.channels[channel_id]\n"
    "KeyError: None\n"
    "\nDuring handling of the above exception, another exception occurred:\n\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/amqp/method_framing.py", line 53, in on_frame\n'
    "    callback(channel, method_sig, buf, None)\n"
    "amqp.exceptions.ConnectionForced: (0, 0): (320) CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'\n",
    "[{ts}: WARNING/MainProcess] /usr/local/lib/python3.12/site-packages/celery/worker/consumer/consumer.py:391: CPendingDeprecationWarning: \n"
    "In Celery 5.1 we introduced an optional breaking change which\non connection loss cancels all currently executed tasks with late acknowledgement enabled.\n"
    "  warnings.warn(CANCEL_TASKS_BY_DEFAULT, CPendingDeprecationWarning)\n\n"
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... (BrokenPipeError(32, 'Broken pipe'))\n",
    "[{ts}: ERROR/MainProcess] consumer: Cannot connect to amqp://app:**@mq.internal:5672//: [Errno 111] Connection refused.\nTrying again in 2.00 seconds... (1/100)\n\n",
]


def w_traffic(c, fmt, warn_rate, err_rate):
    n = R.choice(NAMES)
    i = tid()
    c.tick(R.uniform(0.001, 0.01))
    out = [fmt(c, "INFO", "MainProcess", f"Task {n}[{i}] received")]
    if R.random() < warn_rate:
        c.tick(0.001)
        out.append(fmt(c, "WARNING", "ForkPoolWorker-%d" % R.randint(1, 8), R.choice(WARN).format(n=n, i=i)))
    if R.random() < err_rate:
        c.tick(0.001)
        if R.random() < 0.5:
            out.append(
                fmt(
                    c,
                    "ERROR",
                    "ForkPoolWorker-%d" % R.randint(1, 8),
                    f"Task {n}[{i}] raised unexpected: ConnectionError(...)\n" + APP_TB.rstrip("\n"),
                )
            )
        else:
            out.append(
                fmt(
                    c,
                    "ERROR",
                    "ForkPoolWorker-%d" % R.randint(1, 8),
                    f"{n}[{i}]: webhook delivery failed, will retry\n" + APP_TB.rstrip("\n"),
                )
            )
        c.tick(0.001)
        out.append(
            fmt(c, "INFO", "ForkPoolWorker-%d" % R.randint(1, 8), f"Task {n}[{i}] succeeded in {R.random():.6f}s: None")
        )
    else:
        c.tick(R.uniform(0.001, 0.02))
        out.append(
            fmt(
                c,
                "INFO",
                "ForkPoolWorker-%d" % R.randint(1, 8),
                f"Task {n}[{i}] succeeded in {R.random():.6f}s: {{'ok': True}}",
            )
        )
    return "".join(out)


def f_default(c, lvl, proc, msg):
    return f"[{c.cel()}: {lvl}/{proc}] {msg}\n"


def f_k8s(c, lvl, proc, msg):  # kubectl logs --timestamps: every physical line
    s = f"[{c.cel()}: {lvl}/{proc}] {msg}\n"
    ts = c.iso()[:-1] + "123Z"
    return "".join(ts + " " + ln for ln in s.splitlines(keepends=True))


def f_journal(c, lvl, proc, msg):  # journalctl -u celery: every physical line
    s = f"[{c.cel()}: {lvl}/{proc}] {msg}\n"
    head = time.strftime("%b %d %H:%M:%S", time.gmtime(c.t)) + " app-03 celery[4121]: "
    return "".join(head + ln for ln in s.splitlines(keepends=True))


def f_ecs(c, lvl, proc, msg):
    first, _, rest = msg.partition("\n")
    d = {
        "@timestamp": c.iso(),
        "log.level": lvl.lower(),
        "message": first,
        "ecs.version": "1.6.0",
        "log": {
            "logger": "celery.worker.consumer.consumer"
            if "broker" in first or "Cannot connect" in first
            else "celery.app.trace"
        },
        "process": {"name": proc, "pid": 17},
    }
    if rest:
        d["error"] = {"stack_trace": rest}
    return json.dumps(d) + "\n"


def w_loss(c, fmt, k):
    c.tick(R.uniform(60, 300))
    txt = LOSS5[k % len(LOSS5)].format(ts=c.cel())
    if fmt is f_ecs and k % len(LOSS5) == 2:
        txt = txt.split("\n\n", 1)[1]
    if fmt is f_ecs:
        head = txt.split("\n", 1)[0]
        lvl = head.split(": ", 1)[1].split("/")[0]
        out = fmt(c, lvl, "MainProcess", head.split("] ", 1)[1] + "\n" + txt.split("\n", 1)[1])
    elif fmt is f_default:
        out = txt
    else:
        out = "".join(
            (fmt.__name__ == "f_k8s"
            and (c.iso() + " " + ln))
            or (time.strftime("%b %d %H:%M:%S", time.gmtime(c.t)) + " app-03 celery[4121]: " + ln)
            for ln in txt.splitlines(keepends=True)
        )
    c.tick(2.1)
    return out + fmt(c, "INFO", "MainProcess", "Connected to amqp://app:**@mq.internal:5672//")


def rabbit_traffic(c, js=False):
    pid = "<0.%d.%d>" % (R.randint(1000, 99999), R.randint(0, 3))
    peer = "172.18.%d.%d:%d -> 172.18.0.2:5672" % (R.randint(0, 3), R.randint(2, 250), R.randint(32768, 60999))
    msgs = [
        (
            "info",
            f"accepting AMQP connection {peer}" if R.random() < 0.5 else f"accepting AMQP connection {pid} ({peer})",
        ),
        ("info", f"connection {pid} ({peer}) has a client-provided name: celery@api-7d9f.producer"),
        (
            "info",
            f"connection {pid} ({peer} - celery@api-7d9f.producer): user 'app' authenticated and granted access to vhost 'prod'",
        ),
    ]
    if R.random() < 0.1:
        msgs.append(
            (
                "warning",
                f"closing AMQP connection {pid} ({peer} - celery@api-7d9f.producer, vhost: 'prod', user: 'app'):\nclient unexpectedly closed TCP connection",
            )
        )
    else:
        msgs.append(
            ("info", f"closing AMQP connection {pid} ({peer} - celery@api-7d9f.producer, vhost: 'prod', user: 'app')")
        )
    out = []
    for lvl, m in msgs:
        c.tick(R.uniform(0.0005, 0.01))
        out.append(rline(c, lvl, pid, m, js))
    return "".join(out)


def rline(c, lvl, pid, m, js):
    if js:
        return (
            json.dumps(
                {"time": c.rab().replace(" ", " "), "level": lvl, "msg": m, "pid": pid, "domain": "rabbitmq.connection"}
            )
            + "\n"
        )
    return "".join(f"{c.rab()} [{lvl}] {pid} {ln}\n" for ln in m.split("\n"))


def rabbit_loss(c, k, js=False):
    c.tick(R.uniform(60, 300))
    pid = "<0.%d.0>" % (500000 + k)
    peer = "172.18.0.%d:%d -> 172.18.0.2:5672" % (k % 200 + 2, 40000 + k % 20000)
    if k % 2:
        m = f"closing AMQP connection {pid} ({peer} - celery@worker-1.consumer, vhost: 'prod', user: 'app'):\nmissed heartbeats from client, timeout: 60s"
    else:
        m = f"closing AMQP connection {pid} ({peer} - celery@worker-1.consumer, vhost: 'prod', user: 'app'):\nmissed heartbeats from client, timeout: 30s"
    return rline(c, "error", pid, m, js)


def redis_traffic(c):
    a = "172.18.0.%d:%d" % (R.randint(2, 250), R.randint(32768, 60999))
    c.tick(R.uniform(0.001, 0.02))
    s = f"7:M {c.red()} - Accepted {a}\n"
    c.tick(R.uniform(0.001, 0.05))
    s += f"7:M {c.red()} - Client closed connection id={R.randint(1, 10**6)} addr={a} laddr=172.18.0.3:6379 fd=12 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=5 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=brpop user=default redir=-1 resp=2 lib-name=redis-py lib-ver=5.0.1\n"
    if R.random() < 0.01:
        s += f"7:M {c.red()} * 100 changes in 300 seconds. Saving...\n7:M {c.red()} * Background saving started by pid 88\n88:C {c.red()} * DB saved on disk\n"
    return s


def redis_loss(c, k):
    c.tick(R.uniform(400, 900))
    if k % 2:
        return f"7:M {c.red()} - Closing idle client\n"
    return f"7:M {c.red()} # Client id={k} addr=172.18.0.9:51234 laddr=172.18.0.3:6379 fd=15 name= age=912 idle=0 flags=P db=0 sub=0 psub=1 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=1200 omem=33554432 tot-mem=33560000 events=rw cmd=psubscribe user=default redir=-1 resp=2 closed for exceeding output buffer limits\n"


PY2 = (
    '  File "/opt/app/env/lib/python2.7/site-packages/celery/app/trace.py", line 240, in trace_task\n'
    "    R = retval = fun(*args, **kwargs)\n"
)


def c31_traffic(c):
    n = R.choice(NAMES)
    i = tid()
    c.tick(0.003)
    s = f"[{c.cel()}: INFO/MainProcess] Received task: {n}[{i}]\n"
    c.tick(0.004)
    if R.random() < 0.2:
        frames = PY2 * R.randint(3, 12)
        s += (
            f"[{c.cel()}: ERROR/MainProcess] Task {n}[{i}] raised unexpected: error(104, 'Connection reset by peer')\n"
            f'Traceback (most recent call last):\n{frames}  File "/opt/app/env/lib/python2.7/socket.py", line 476, in readline\n    data = self._sock.recv(self._rbufsize)\nerror: [Errno 104] Connection reset by peer\n'
        )
    else:
        s += f"[{c.cel()}: INFO/MainProcess] Task {n}[{i}] succeeded in {R.random():.4f}s: None\n"
    return s


def c31_loss(c, k):
    c.tick(R.uniform(60, 300))
    ts = c.cel()
    if k % 2:
        s = (
            f"[{ts}: ERROR/MainProcess] consumer: Cannot connect to amqp://app:**@mq.internal:5672//: [Errno 104] Connection reset by peer.\n"
            "Trying again in 2.00 seconds...\n\n"
        )
    else:
        s = (
            f"[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
            "Traceback (most recent call last):\n"
            '  File "/opt/app/env/lib/python2.7/site-packages/celery/worker/consumer.py", line 278, in start\n'
            "    blueprint.start(self)\n"
            '  File "/opt/app/env/lib/python2.7/site-packages/amqp/transport.py", line 237, in _read\n'
            "    s = recv(n - len(rbuf))\nerror: [Errno 104] Connection reset by peer\n"
        )
    c.tick(2.1)
    return s + f"[{c.cel()}: INFO/MainProcess] Connected to amqp://app:**@mq.internal:5672//\n"


SHAPES = {
    "w-dense": (lambda c: w_traffic(c, f_default, 0.15, 0.03), lambda c, k: w_loss(c, f_default, k)),
    "w-k8s": (lambda c: w_traffic(c, f_k8s, 0.07, 0.01), lambda c, k: w_loss(c, f_k8s, k)),
    "w-journal": (lambda c: w_traffic(c, f_journal, 0.07, 0.01), lambda c, k: w_loss(c, f_journal, k)),
    "w-ecs": (lambda c: w_traffic(c, f_ecs, 0.07, 0.01), lambda c, k: w_loss(c, f_ecs, k)),
    "rabbit": (rabbit_traffic, rabbit_loss),
    "rabbit-json": (lambda c: rabbit_traffic(c, True), lambda c, k: rabbit_loss(c, k, True)),
    "redis": (redis_traffic, redis_loss),
    "c31-dense": (c31_traffic, c31_loss),
}


ANCHORS = {"rabbit": "missed heartbeats", "rabbit-json": "missed heartbeats", "redis": "Closing idle client"}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SHAPES:
        print(__doc__.strip())
        print("names: " + ", ".join(SHAPES))
        raise SystemExit(2)
    name, mb, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    traffic, loss = SHAPES[name]
    c = C()
    size = mb << 20
    every = max(64 << 10, min(4 << 20, size // 10))
    nxt = every // 3
    w = k = 0
    with open(out, "w") as f:
        buf = []
        bl = 0
        while w < size:
            s = traffic(c)
            buf.append(s)
            bl += len(s)
            if w + bl >= nxt:
                s = loss(c, k)
                k += 1
                nxt += every
                buf.append(s)
                bl += len(s)
            if bl > 1 << 20:
                f.write("".join(buf))
                w += bl
                buf = []
                bl = 0
        f.write("".join(buf))
    truth = {
        "shape": "v-" + name,
        "injected": k,
        "anchor": ANCHORS.get(name, "Connected to amqp"),
        "files": [out],
        "gz": False,
    }
    if name.startswith("rabbit"):  # the traffic's own abrupt closes are incidents too: count the injected kind
        truth["kind"] = "heartbeat_missed_client"
    with open(out + ".truth.json", "w") as f:
        json.dump(truth, f)
    print(json.dumps(truth))


if __name__ == "__main__":
    main()
