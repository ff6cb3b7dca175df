"""The message catalogue, as data: which log line means which event.

Each entry names the source file that emits the text (checked against the released sources;
see docs/signatures.md). ``literal`` is what the fast scan looks for in raw bytes; ``pattern``
(optional) must also match the whole record for the entry to apply. Order matters: the first
matching entry of a family wins, so specific entries come before general ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from celery_doctor.model import Kind, Side


@dataclass(frozen=True)
class Signature:
    id: str
    family: str  # "celery" (worker/beat/kombu/clients), "rabbitmq", "redis"
    kind: Kind
    literal: str
    source: str  # project and file that emits it
    pattern: re.Pattern[str] | None = None
    versions: str = "all"

    @property
    def side(self) -> Side:
        return Side.CLIENT if self.family == "celery" else Side.BROKER


def _re(text: str) -> re.Pattern[str]:
    return re.compile(text, re.S)


CELERY_CONSUMER = "celery celery/worker/consumer/consumer.py (3.1: celery/worker/consumer.py)"
RABBIT_READER = "rabbitmq-server deps/rabbit/src/rabbit_reader.erl (<=3.8: src/rabbit_reader.erl)"

SIGNATURES: tuple[Signature, ...] = (
    # --- Celery worker / beat / kombu / client libraries (side: client) -------------------------
    Signature("celery.consumer.connection_lost", "celery", Kind.CONNECTION_LOST,
              "Connection to broker lost", CELERY_CONSUMER, versions="3.1+"),
    Signature("celery.consumer.cannot_connect", "celery", Kind.CANNOT_CONNECT,
              "Cannot connect to ", CELERY_CONSUMER, versions="3.1+"),
    Signature("celery.consumer.connected", "celery", Kind.CONNECTED,
              "Connected to ", "celery celery/worker/consumer/connection.py", _re(r"Connected to \w+://"),
              versions="3.1+"),
    # py-amqp at DEBUG, as the connection opens: the only connect line of a publisher (a script, a web
    # process) that logs no "Connected to"; 1.4, 2.x and 5.x word it the same (START_DEBUG_FMT)
    Signature("pyamqp.connection.start", "celery", Kind.CONNECTED,
              "Start from server, version:", "py-amqp amqp/connection.py Connection._on_start (DEBUG)"),
    Signature("celery.worker.unrecoverable_auth", "celery", Kind.AUTH_REFUSED,
              "Unrecoverable error", "celery celery/worker/worker.py",
              _re(r"Unrecoverable error.*(AccessRefused|ACCESS_REFUSED|login refused|\(403\))")),
    Signature("celery.worker.unrecoverable_connection", "celery", Kind.CONNECTION_LOST,
              "Unrecoverable error", "celery celery/worker/worker.py",
              _re(r"Unrecoverable error: \w*(OperationalError|ConnectionError|ConnectionReset|BrokenPipe|"
                  r"RecoverableConnectionError|ConnectionForced|socket\.timeout|OSError|IOError)")),
    # any other exception that stops the worker: a library bug, a server refusal (MISCONF, OOM),
    # a channel closed by the broker; rules/logs/ read its traceback
    Signature("celery.worker.unrecoverable_other", "celery", Kind.WORKER_CRASH,
              "Unrecoverable error", "celery celery/worker/worker.py"),
    # Celery refusing a configuration that mixes old (CELERYD_*, BROKER_*) and new lowercase names
    # (celery/app/utils.py detect_settings raises ImproperlyConfigured with E_MIX_OLD_INTO_NEW "Cannot mix
    # new and old setting keys, please rename the ..." or E_MIX_NEW_INTO_OLD "Cannot mix new setting names
    # with old setting names, please ..."); the worker stops before it connects; rules/logs/mixed_settings.py
    # py-amqp 2.4.0 indexing the broker's capabilities on every publish (amqp/channel.py _basic_publish:
    # client_properties['capabilities']['connection.blocked']) against a broker that does not advertise it
    # (RabbitMQ < 3.2): KeyError: 'connection.blocked' (u'...' on Python 2); data/known_bad.json names it
    Signature("pyamqp.publish.connection_blocked_keyerror", "celery", Kind.WORKER_CRASH,
              "connection.blocked", "py-amqp amqp/channel.py _basic_publish (2.4.0 only)",
              _re(r"KeyError\W{0,3}u?'?connection\.blocked"), versions="2.4.0"),
    Signature("celery.config.mixed_names", "celery", Kind.WORKER_CRASH,
              "Cannot mix new", "celery celery/app/utils.py (E_MIX_OLD_INTO_NEW, E_MIX_NEW_INTO_OLD)",
              _re(r"Cannot mix new (?:and old setting keys|setting names with old setting names)"), versions="4.0+"),
    Signature("celery.beat.connection_error", "celery", Kind.CONNECTION_LOST,
              "beat: Connection error", "celery celery/beat.py", versions="3.1+"),
    Signature("kombu.ensure.connection_error", "celery", Kind.CONNECTION_LOST,
              "Connection error: ", "kombu kombu/connection.py, kombu/common.py (ensure errback)",
              _re(r"Connection error: .*Retry in")),
    Signature("celery.backend.redis_lost", "celery", Kind.CONNECTION_LOST,
              "Connection to Redis lost", "celery celery/backends/redis.py", versions="4.0+"),
    Signature("pyamqp.too_many_heartbeats", "celery", Kind.HEARTBEAT_MISSED_BROKER,
              "Too many heartbeats missed", "py-amqp amqp/connection.py heartbeat_tick"),
    # kombu/message.py Message.ack()/reject(): logger.critical("Couldn't ack %r, reason:%r", ...) when the
    # channel or connection under the message is gone; "reason: %r" (with a space) for reject
    Signature("kombu.message.ack_failed_connection", "celery", Kind.CONNECTION_LOST,
              "Couldn't ", "kombu kombu/message.py (ack, ack_log_error, reject_log_error)",
              _re(r"Couldn't (?:ack|reject) .*reason: ?\S*(?:Connection|BrokenPipe|Socket|socket|OSError|IOError|"
                  r"error\(|RecoverableConnectionError|ConnectionForced|timed out|network:|Errno)")),
    Signature("kombu.message.ack_failed", "celery", Kind.CHANNEL_ERROR,
              "Couldn't ", "kombu kombu/message.py (ack, ack_log_error, reject_log_error)",
              _re(r"Couldn't (?:ack|reject) \S+, ?reason")),
    # celery/worker/pidbox.py Pidbox.on_message: error('Control command error: %r', exc, exc_info=True)
    Signature("celery.pidbox.control_connection_error", "celery", Kind.CONNECTION_LOST,
              "Control command error", "celery celery/worker/pidbox.py",
              _re(r"Control command error: \S*(?:Connection\w*Error|BrokenPipe|OSError|IOError|RecoverableConnection|"
                  r"ConnectionForced|timeout|network:|"
                  r"OperationalError\(.{0,80}(?:Errno|reset|refused|closed|timed out))")),
    # celery/worker/consumer/consumer.py ensure_connected: CONNECTION_RETRY_STEP and CONNECTION_FAILOVER
    # are the second line of "Cannot connect to"; seen alone when that line was cut off the paste
    Signature("celery.consumer.retry_step", "celery", Kind.CANNOT_CONNECT,
              "Trying again ", CELERY_CONSUMER, _re(r"^\s*Trying again (?:in [\d.]+ \w+|now)?\.\.\.")),
    # Celery 2.x-3.0 consumer _error_handler: "Consumer: Connection Error: %s. Trying again in %d seconds..."
    Signature("celery.consumer.connection_error_2x", "celery", Kind.CANNOT_CONNECT,
              "Connection Error: ", "celery celery/worker/consumer.py (2.x-3.0 _error_handler)",
              _re(r"Consumer: Connection Error: .*Trying again in \d+ seconds"), versions="2.0-3.0"),
    Signature("celery.consumer.failover", "celery", Kind.CANNOT_CONNECT,
              "Will retry using next failover", CELERY_CONSUMER, versions="4.0+"),
    # Redis refusing this client, as redis-py raises the server's error reply (redis/src/networking.c
    # acceptCommonHandler "max number of clients reached"; server.c processCommand shared.oomerr,
    # shared.bgsaveerr): quoted with any wrapper (a repr, an error tracker's title, a Django page)
    Signature("redis.reply.max_clients", "celery", Kind.CANNOT_CONNECT,
              "max number of clients reached", "redis src/networking.c (via redis-py exceptions)"),
    Signature("redis.reply.oom", "celery", Kind.WORKER_CRASH,
              "OOM command not allowed", "redis src/server.c (via redis-py ResponseError)"),
    # a managed Redis refusing commands past the plan's quota (Upstash's replies, as medusajs/admin#654 and
    # wotschofsky/domain-digger#36 quote them: "ERR max daily request limit exceeded. Limit: 10000, Usage: ...")
    Signature("redis.reply.plan_quota", "celery", Kind.WORKER_CRASH,
              "limit exceeded", "Upstash Redis (managed service replies, via redis-py ResponseError)",
              _re(r"max (?:daily )?requests? limit exceeded")),
    Signature("redis.reply.misconf", "celery", Kind.WORKER_CRASH,
              "MISCONF Redis is configured to save RDB snapshots", "redis src/server.c (via redis-py ResponseError)"),
    # Redis answering while it reads its RDB/AOF after a start, or a replica loading its master's copy in a
    # full resync (src/server.c shared.loadingerr "-LOADING Redis is loading the dataset in memory"); redis-py
    # drops the LOADING code into BusyLoadingError, a ConnectionError kombu retries ("Cannot connect to ...:
    # Redis is loading the dataset in memory.", that entry wins above); here the same reply quoted anywhere
    # else (a task handler's error, a bare exception line); rules/logs/redis_loading.py reads it
    Signature("redis.reply.loading", "celery", Kind.CANNOT_CONNECT,
              "is loading the dataset in memory",
              "redis src/server.c shared.loadingerr (via redis-py BusyLoadingError)"),
    # A Redis endpoint that does not serve what kombu's Redis transport sends: a Redis Cluster node
    # (src/cluster.c clusterRedirectClient: "-CROSSSLOT Keys in request don't hash to the same slot",
    # "-MOVED %d %s:%d", "-ASK ...", "-CLUSTERDOWN ..."; processCommand: "SELECT is not allowed in cluster
    # mode"), a cloud cluster proxy ("'BRPOP' command keys must in same slot", its own wording), or a server
    # older than the command (src/server.c processCommand: "unknown command '%s'", 6.2+ ", with args
    # beginning with: ..."); rules/logs/redis_commands.py reads which command and why
    Signature("redis.reply.cross_slot", "celery", Kind.WORKER_CRASH,
              "same slot", "redis src/cluster.c (CROSSSLOT), cloud cluster proxies (via redis-py ResponseError)",
              _re(r"CROSSSLOT Keys in request|keys must (?:be )?in (?:the )?same slot")),
    Signature("redis.reply.moved", "celery", Kind.WORKER_CRASH,
              "MOVED ", "redis src/cluster.c clusterRedirectClient (via redis-py ResponseError)",
              _re(r"(?:Error|error:?|caused error:?)[\s(\"']*MOVED \d+ [\w.:\-\[\]]+:\d+")),
    Signature("redis.reply.cluster_select", "celery", Kind.WORKER_CRASH,
              "SELECT is not allowed in cluster mode", "redis src/server.c processCommand (via redis-py)"),
    Signature("redis.reply.unknown_command", "celery", Kind.WORKER_CRASH,
              "unknown command", "redis src/server.c processCommand (via redis-py ResponseError)",
              _re(r"(?:ResponseError|ERR)\W{0,3}unknown command [`']")),
    # TLS options of a Redis URL that Celery or redis-py refuse before connecting: Celery's Redis result
    # backend (celery/backends/redis.py E_REDIS_SSL_CERT_REQS_MISSING_INVALID, 4.3: "... ssl_cert_reqs be
    # CERT_REQUIRED, ..."), its pre-5.1 getattr(ssl, value) of a lower-case value (celery#5988), and redis-py
    # given ssl_* options on a plain redis:// connection (TypeError from Connection.__init__) or a bad flag
    # (redis/connection.py SSLConnection: "Invalid SSL Certificate Requirements Flag: %s")
    Signature("celery.redis.ssl_cert_reqs_missing", "celery", Kind.WORKER_CRASH,
              "URL must have parameter ssl_cert_reqs",
              "celery celery/backends/redis.py (E_REDIS_SSL_CERT_REQS_MISSING_INVALID)", versions="4.3+"),
    Signature("celery.redis.ssl_cert_reqs_lowercase", "celery", Kind.WORKER_CRASH,
              "module 'ssl' has no attribute", "celery celery/backends/redis.py (getattr(ssl, ssl_cert_reqs), <5.1)",
              _re(r"module 'ssl' has no attribute '(?:required|optional|none)'")),
    Signature("redis.ssl.kwarg_on_plain_connection", "celery", Kind.WORKER_CRASH,
              "unexpected keyword argument 'ssl", "redis-py redis/connection.py (Connection.__init__ given ssl_*)",
              _re(r"unexpected keyword argument 'ssl_\w+'")),
    Signature("redis.ssl.invalid_cert_reqs", "celery", Kind.WORKER_CRASH,
              "Invalid SSL Certificate Requirements Flag", "redis-py redis/connection.py SSLConnection.__init__"),
    # RabbitMQ refusing a connection or a channel for a count it enforces, as py-amqp quotes the 530 reply
    # (amqp.exceptions.NotAllowed): a vhost's or user's max-connections (rabbit_reader.erl "access to vhost
    # '~ts' refused for user '~ts': connection limit (~p) is reached", recorded here against RabbitMQ 3.x),
    # a connection's channel_max or a user's max-channels ("number of channels opened (~b) has reached the
    # negotiated channel_max (~b)", the form RabbitMQ's channels guide shows); rules/logs/rabbitmq_limits.py
    Signature("amqp.not_allowed.connection_limit", "celery", Kind.CANNOT_CONNECT,
              "connection limit", "rabbitmq-server deps/rabbit/src/rabbit_reader.erl (via py-amqp NotAllowed)",
              _re(r"connection limit \(\d+\) is reached"), versions="3.7+"),
    Signature("amqp.not_allowed.channel_max", "celery", Kind.CONNECTION_LOST,
              "number of channels opened",
              "rabbitmq-server deps/rabbit/src/rabbit_reader.erl (via py-amqp NotAllowed)"),
    # RabbitMQ's consumer cancel notification, as py-amqp raises it (amqp/channel.py _on_basic_cancel:
    # ConsumerCancelled(consumer_tag, spec.Basic.Cancel), a RecoverableConnectionError; recorded here)
    Signature("amqp.consumer_cancelled", "celery", Kind.CONNECTION_LOST,
              "ConsumerCancelled", "py-amqp amqp/channel.py _on_basic_cancel"),
    # the AMQP stream's framing lost (py-amqp amqp/transport.py read_frame: UnexpectedFrame("Received {0:#04x}
    # while expecting 0xce"); amqplib: "Framing Error, received 0x%02x while expecting 0xce"), quoted in any
    # wrapper (a RuntimeWarning of celery/app/trace.py, a bare line); rules/logs/frame_errors.py
    Signature("amqp.frame_end_expected", "celery", Kind.CONNECTION_LOST,
              "while expecting 0xce", "py-amqp amqp/transport.py read_frame (amqplib: transport.py)"),
    # redis-py's own pool refusing another connection (redis/connection.py ConnectionPool.make_connection:
    # ConnectionError("Too many connections"), MaxConnectionsError in 6.x; BlockingConnectionPool
    # .get_connection: ConnectionError("No connection available.")): the client's cap, not the server's
    Signature("redis.pool.too_many_connections", "celery", Kind.CANNOT_CONNECT,
              "Too many connections", "redis-py redis/connection.py ConnectionPool.make_connection",
              _re(r"(?:ConnectionError|MaxConnectionsError)\W{1,4}Too many connections")),
    Signature("redis.pool.no_connection_available", "celery", Kind.CANNOT_CONNECT,
              "No connection available", "redis-py redis/connection.py BlockingConnectionPool.get_connection",
              _re(r"ConnectionError\W{1,4}No connection available")),
    # kombu's own refusal of the installed redis-py (kombu/transport/redis.py _get_client, 2.x "... 2.4.4 or
    # later. You have %r", 4.4+ "... 3.2.0 or later. You have {0.__version__}"), quoted with or without its class
    Signature("kombu.redis.version_mismatch", "celery", Kind.WORKER_CRASH,
              "transport requires redis-py versions", "kombu kombu/transport/redis.py (VersionMismatch)"),
    # RabbitMQ refusing what the client asked for, quoted by py-amqp's exceptions (a bare line, a
    # chained traceback): basic.qos global=true on a queue that cannot do it (rabbit_quorum_queue.erl,
    # rabbit_amqqueue.erl: "queue ~ts does not support global qos", reply 540), and RabbitMQ 4.3+'s
    # refusal of transient non-exclusive queues (rabbit_deprecated_features.erl, reply 541)
    Signature("amqp.global_qos_refused", "celery", Kind.CONNECTION_LOST,
              "does not support global qos", "rabbitmq-server deps/rabbit/src/rabbit_quorum_queue.erl (via py-amqp)",
              versions="3.8+"),
    Signature("amqp.deprecated_transient_queue", "celery", Kind.CONNECTION_LOST,
              "transient_nonexcl_queues", "rabbitmq-server deps/rabbit/src/rabbit_deprecated_features.erl "
              "(via py-amqp InternalError 541)", _re(r"transient_nonexcl_queues`? is deprecated|INTERNAL_ERROR"),
              versions="4.0+"),
    # Flower's (and `celery events`') event receiver catches any exception and retries each second
    # (flower/events.py: "Failed to capture events: '%s', trying again in %s seconds."); one that is
    # no connection error is a library failure the known-bug catalogue reads (rules/logs/known_bugs.py)
    Signature("flower.events.capture_failed_other", "celery", Kind.WORKER_CRASH,
              "Failed to capture events", "flower flower/events.py (celery celery/bin/events.py)",
              re.compile(r"Failed to capture events: ['\"](?![^\n]*(?:Errno|reset|refused|[Cc]losed|timed out|"
                         r"onnection|ocket|Broken pipe|Timeout|unreachable|resolve|SSL|EOF))")),
    # Python 3.7+ refusing a library's direct SSLSocket(...) (Lib/ssl.py SSLSocket.__init__: TypeError
    # "SSLSocket does not have a public constructor..."), seen as the message or as the raise's own source
    # line when a paste stops there; py-amqp < 2.4 made its TLS socket that way (rules: the catalogue)
    Signature("python.ssl.sslsocket_constructor", "celery", Kind.WORKER_CRASH,
              "does not have a public", "cpython Lib/ssl.py (SSLSocket.__init__, 3.7+)",
              _re(r"(?:SSLSocket|SSLObject|self\.__class__\.__name__\}) does not have a public")),
    # Python's ssl module, as a client logs it alone (a bare exception line, an error tracker's title):
    # OpenSSL's reason in brackets ([SSL: WRONG_VERSION_NUMBER], [SSL: CERTIFICATE_VERIFY_FAILED]) or
    # the handshake timeout of ssl.py / _ssl.c; "Cannot connect to ..." lines that carry them match above
    Signature("python.ssl.error", "celery", Kind.TLS_ERROR,
              "SSL", "cpython Modules/_ssl.c, Lib/ssl.py (OpenSSL reason strings)",
              _re(r"\[SSL: [A-Z0-9_]+\]|SSLCertVerificationError|SSL: CERTIFICATE_VERIFY_FAILED|"
                  r"_ssl\.c:\d+: The handshake operation timed out")),
    Signature("celery.worker.ready", "celery", Kind.WORKER_READY,
              " ready.", "celery celery/apps/worker.py", _re(r"@\S+ ready\.\s*$")),
    Signature("celery.worker.shutdown", "celery", Kind.WORKER_SHUTDOWN,
              " shutdown (MainProcess)", "celery celery/apps/worker.py", _re(r"(Warm|Cold) shutdown")),
    Signature("billiard.worker_lost", "celery", Kind.WORKER_LOST,
              "Worker exited prematurely", "billiard billiard/pool.py (WorkerLostError)"),
    # the pool forking or retiring children: context for a connection error at that moment (a child
    # inherits the parent's sockets; its exit or after-fork cleanup can end them), not an event of its own
    Signature("celery.autoscale.resize", "celery", Kind.OTHER,
              "Scaling ", "celery celery/worker/autoscale.py (Autoscaler._grow/_shrink, INFO)",
              _re(r"Scaling (?:up|down) \d+ processes\.")),
    Signature("billiard.process.start", "celery", Kind.OTHER,
              "calling self.run()", "billiard billiard/process.py (_bootstrap, INFO; the same words as "
              "multiprocessing)", _re(r"child process (?:\d+ )?calling self\.run\(\)")),
    Signature("billiard.process.exit", "celery", Kind.OTHER,
              "process exiting with exitcode", "billiard billiard/process.py (_bootstrap, INFO)",
              _re(r"process exiting with exitcode -?\d+")),
    # --- RabbitMQ (side: broker) ------------------------------------------------------------------
    Signature("rabbitmq.conn.heartbeat_missed", "rabbitmq", Kind.HEARTBEAT_MISSED_CLIENT,
              "issed heartbeats from client", RABBIT_READER, versions="3.5.4+"),
    Signature("rabbitmq.conn.closed_abruptly", "rabbitmq", Kind.CLIENT_CLOSED_ABRUPTLY,
              "client unexpectedly closed TCP connection", RABBIT_READER, versions="3.6+"),
    Signature("rabbitmq.conn.closed_abruptly_old", "rabbitmq", Kind.CLIENT_CLOSED_ABRUPTLY,
              "connection_closed_abruptly", RABBIT_READER, versions="<=3.5"),
    Signature("rabbitmq.conn.inet_error", "rabbitmq", Kind.CLIENT_CLOSED_ABRUPTLY,
              "{inet_error,", RABBIT_READER),
    Signature("rabbitmq.conn.socket_error", "rabbitmq", Kind.CLIENT_CLOSED_ABRUPTLY,
              "Error on AMQP connection", RABBIT_READER, _re(r"econnreset|connection reset|etimedout|epipe")),
    Signature("rabbitmq.auth.login_refused", "rabbitmq", Kind.AUTH_REFUSED,
              "login refused", RABBIT_READER + " / rabbit_auth_backend_internal.erl"),
    Signature("rabbitmq.auth.vhost_refused", "rabbitmq", Kind.ACCESS_REFUSED,
              "access to vhost", RABBIT_READER + " / rabbit_access_control.erl",
              _re(r"access to vhost \S+ refused")),
    Signature("rabbitmq.auth.vhost_missing", "rabbitmq", Kind.ACCESS_REFUSED,
              "not found", RABBIT_READER, _re(r"vhost \S+ not found|vhost_not_found")),
    Signature("rabbitmq.auth.connection_limit", "rabbitmq", Kind.ACCESS_REFUSED,
              "connection limit", RABBIT_READER, _re(r"connection limit \(\d+\) is reached"), versions="3.7+"),
    # a connection asking for a channel past its negotiated channel_max (or a user's max-channels, 3.8.10+):
    # "operation none caused a connection exception not_allowed: \"number of channels opened (22) has reached
    # the negotiated channel_max (22)\"" (the broker closes the whole connection)
    Signature("rabbitmq.conn.channel_max", "rabbitmq", Kind.CHANNEL_ERROR,
              "number of channels opened", RABBIT_READER),
    # frames of two publishes interleaved on one channel (deps/rabbit/src/rabbit_command_assembler.erl:
    # "expected content header for class ~w, got non content header frame instead", unexpected_frame 505)
    Signature("rabbitmq.conn.unexpected_frame", "rabbitmq", Kind.CHANNEL_ERROR,
              "unexpected_frame", "rabbitmq-server deps/rabbit/src/rabbit_command_assembler.erl"),
    Signature("rabbitmq.conn.forced", "rabbitmq", Kind.BROKER_FORCED_CLOSE,
              "broker forced connection closure", RABBIT_READER),
    Signature("rabbitmq.conn.forced_code", "rabbitmq", Kind.BROKER_FORCED_CLOSE,
              "connection_forced", RABBIT_READER),
    Signature("rabbitmq.conn.close_requested", "rabbitmq", Kind.BROKER_FORCED_CLOSE,
              "Closing connection ", RABBIT_READER, _re(r"Closing connection \S+ because")),
    Signature("rabbitmq.channel.consumer_timeout", "rabbitmq", Kind.CONSUMER_TIMEOUT,
              "timed out", "rabbitmq-server deps/rabbit/src/rabbit_channel.erl",
              _re(r"consumer ack timed out|delivery acknowledgement on channel \S+ timed out|"
                  r"has timed out waiting (for|on) (delivery|a consumer|consumer) acknowledgement"),
              versions="3.8.0+"),
    Signature("rabbitmq.channel.error", "rabbitmq", Kind.CHANNEL_ERROR,
              "hannel error", "rabbitmq-server rabbit_channel.erl / rabbit_reader.erl",
              _re(r"Channel error on connection|channel \d+ - error")),
    Signature("rabbitmq.channel.error_old", "rabbitmq", Kind.CHANNEL_ERROR,
              "- error:", "rabbitmq-server src/rabbit_reader.erl (<=3.6)", _re(r"channel \d+ - error")),
    Signature("rabbitmq.alarm.set", "rabbitmq", Kind.ALARM_SET,
              "resource limit alarm set", "rabbitmq-server deps/rabbit/src/rabbit_alarm.erl"),
    Signature("rabbitmq.alarm.cleared", "rabbitmq", Kind.ALARM_CLEARED,
              "resource limit alarm cleared", "rabbitmq-server deps/rabbit/src/rabbit_alarm.erl"),
    # TLS on the wrong port, as the broker sees it. A plain AMQP client on the TLS listener: Erlang's
    # ssl ("TLS server: In state hello ... generated SERVER ALERT: Fatal - Unexpected Message",
    # "{unsupported_record_type,65}": 65 is the 'A' of "AMQP"). A TLS client on the plain listener:
    # rabbit_reader.erl's "{bad_header,<<22,3,...>>}" (22,3: a TLS handshake record), since 4.1
    # "{detected_unexpected_tls_header,...}" and "TLS client detected on non-TLS AMQP port"
    Signature("rabbitmq.tls.plain_client_on_tls_port", "rabbitmq", Kind.TLS_ERROR,
              "unsupported_record_type", "erlang/otp lib/ssl/src/tls_record.erl (via rabbit_networking)"),
    Signature("rabbitmq.tls.server_alert", "rabbitmq", Kind.TLS_ERROR,
              "generated SERVER ALERT", "erlang/otp lib/ssl/src/ssl_alert.erl (via rabbit_networking)"),
    Signature("rabbitmq.tls.tls_client_on_plain_port", "rabbitmq", Kind.TLS_ERROR,
              "bad_header,<<22,3", RABBIT_READER + " (handshake, <=4.0)"),
    Signature("rabbitmq.tls.tls_header_detected", "rabbitmq", Kind.TLS_ERROR,
              "detected_unexpected_tls_header", RABBIT_READER + " (4.1+)", versions="4.1+"),
    Signature("rabbitmq.tls.tls_client_detected", "rabbitmq", Kind.TLS_ERROR,
              "TLS client detected on non-TLS", RABBIT_READER + " (4.1+)", versions="4.1+"),
    # RabbitMQ 4.3+ refuses to declare a transient non-exclusive queue: the record (one pid and time,
    # several lines) goes on "By default, this feature is not permitted anymore." (or "Its use is not
    # permitted per the configuration"); 4.0-4.2's warning says instead that it "can still be used for now"
    Signature("rabbitmq.deprecated.transient_queue_refused", "rabbitmq", Kind.CHANNEL_ERROR,
              "transient_nonexcl_queues", "rabbitmq-server deps/rabbit/src/rabbit_deprecated_features.erl",
              _re(r"transient_nonexcl_queues.*(?:not permitted anymore|use is not permitted)|"
                  r"INTERNAL_ERROR - Feature `transient_nonexcl_queues`"),
              versions="4.0+"),
    Signature("rabbitmq.conn.accepting", "rabbitmq", Kind.CONNECTION_ACCEPTED,
              "accepting AMQP connection", RABBIT_READER),
    Signature("rabbitmq.conn.closed_clean", "rabbitmq", Kind.CONNECTION_CLOSED_CLEAN,
              "closing AMQP connection", RABBIT_READER),
    # a network partition between cluster nodes (deps/rabbit/src/rabbit_node_monitor.erl: Mnesia's
    # "mnesia_event got {inconsistent_database, running_partitioned_network, Node}", as RabbitMQ's partitions
    # guide shows it; pause_minority's "Cluster minority/secondary status detected - awaiting recovery" and
    # "Partial partition detected", after which the node stops its own applications)
    Signature("rabbitmq.cluster.partitioned", "rabbitmq", Kind.FAILOVER,
              "running_partitioned_network", "rabbitmq-server deps/rabbit/src/rabbit_node_monitor.erl (mnesia event)"),
    Signature("rabbitmq.cluster.partial_partition", "rabbitmq", Kind.FAILOVER,
              "Partial partition detected", "rabbitmq-server deps/rabbit/src/rabbit_node_monitor.erl"),
    Signature("rabbitmq.cluster.pause_minority", "rabbitmq", Kind.BROKER_STOP,
              "minority/secondary status detected", "rabbitmq-server deps/rabbit/src/rabbit_node_monitor.erl"),
    Signature("rabbitmq.node.stopping", "rabbitmq", Kind.BROKER_STOP,
              "asked to stop", "rabbitmq-server deps/rabbit/src/rabbit.erl"),
    Signature("rabbitmq.node.stopping_app", "rabbitmq", Kind.BROKER_STOP,
              "Stopping RabbitMQ", "rabbitmq-server deps/rabbit/src/rabbit.erl"),
    Signature("rabbitmq.node.started", "rabbitmq", Kind.BROKER_START,
              "Server startup complete", "rabbitmq-server deps/rabbit/src/rabbit.erl", versions="3.7+"),
    Signature("rabbitmq.node.started_old", "rabbitmq", Kind.BROKER_START,
              "Server startup complete", "rabbitmq-server src/rabbit.erl (boot banner)"),
    # --- Redis server (side: broker) -------------------------------------------------------------
    Signature("redis.client.idle_timeout", "redis", Kind.SERVER_CLOSED_IDLE,
              "Closing idle client", "redis src/timeout.c (verbose)"),
    Signature("redis.client.output_buffer_limit", "redis", Kind.SERVER_CLOSED_LIMIT,
              "output buffer limits", "redis src/networking.c"),
    Signature("redis.client.query_buffer_limit", "redis", Kind.SERVER_CLOSED_LIMIT,
              "max query buffer", "redis src/networking.c"),
    Signature("redis.client.evicted", "redis", Kind.SERVER_CLOSED_LIMIT,
              "Evicting client", "redis src/networking.c", versions="7.0+"),
    # a TLS listener that got plain text (or the reverse): networking.c clientAcceptHandler /
    # acceptCommonHandler "Error accepting a client connection: %s (conn: %s)" (7.x: "(addr=%s laddr=%s)")
    # with OpenSSL's reason ("error:1408F10B:SSL routines:ssl3_get_record:wrong version number" 1.1,
    # "error:0A00010B:SSL routines::wrong version number" 3.x, "http request")
    Signature("redis.tls.accept_error", "redis", Kind.TLS_ERROR,
              "Error accepting a client connection", "redis src/networking.c (TLS: src/tls.c)",
              _re(r"Error accepting a client connection: .*(?:SSL routines|wrong version number|http request|"
                  r"unknown protocol|alert)"), versions="6.0+"),
    Signature("redis.client.read_error", "redis", Kind.CLIENT_CLOSED_ABRUPTLY,
              "Reading from client", "redis src/networking.c (verbose)"),
    Signature("redis.client.closed", "redis", Kind.CONNECTION_CLOSED_CLEAN,
              "Client closed connection", "redis src/networking.c (verbose)"),
    Signature("redis.client.accepted", "redis", Kind.CONNECTION_ACCEPTED,
              "Accepted ", "redis src/networking.c (verbose)", _re(r"Accepted (\d|\[|/)")),
    Signature("redis.server.shutdown", "redis", Kind.BROKER_STOP,
              "shutdown", "redis src/server.c", _re(r"scheduling shutdown|User requested shutdown")),
    Signature("redis.server.exit", "redis", Kind.BROKER_STOP,
              "ready to exit, bye bye", "redis src/server.c"),
    Signature("redis.server.ready", "redis", Kind.BROKER_START,
              "Ready to accept connections", "redis src/server.c", versions="4.0+"),
    Signature("redis.server.started", "redis", Kind.BROKER_START,
              "Server started, Redis version", "redis src/redis.c", versions="<=3.2"),
    Signature("redis.repl.master_lost", "redis", Kind.FAILOVER,
              "Connection with master lost", "redis src/replication.c"),
    Signature("redis.repl.master_mode", "redis", Kind.FAILOVER,
              "MASTER MODE enabled", "redis src/replication.c"),
    Signature("redis.repl.replicaof", "redis", Kind.FAILOVER,
              "enabled (user request from", "redis src/replication.c (5.0+ REPLICAOF, before SLAVE OF)"),
    Signature("redis.sentinel.switch_master", "redis", Kind.FAILOVER,
              "+switch-master", "redis src/sentinel.c"),
)

FAMILY_SIGNATURES: dict[str, tuple[Signature, ...]] = {
    family: tuple(s for s in SIGNATURES if s.family == family) for family in ("celery", "rabbitmq", "redis")
}

# Task lines: counted for the load curve and looked back at from each failure, never returned.
TASK_LITERALS = (b"] received", b"Received task", b" succeeded in ", b"] raised ")

# The last traceback line names what broke; these tell a connection error from any other.
CONNECTION_ERROR = re.compile(
    r"(ConnectionResetError|ConnectionRefusedError|BrokenPipeError|ConnectionAbortedError|"
    r"ConnectionForced|RecoverableConnectionError|AccessRefused|OperationalError|socket\.timeout|"
    r"TimeoutError|redis\.exceptions\.\w*Error|ConnectionError|SSLError|OSError|IOError|"
    r"Too many heartbeats|reset by peer|Broken pipe|Socket closed|Connection refused|"
    r"Server unexpectedly closed|Connection closed by server|Bad frame read)")


# The errors of a connect attempt that never got a connection (so: cannot_connect, not lost).
REFUSED = re.compile(r"Connection refused|Errno 111\b|Errno 10061|ECONNREFUSED|Name or service not known|"
                     r"Errno -[23]\b|nodename nor servname|getaddrinfo failed|No route to host|Errno 113\b")


def match(family: str, text: str) -> Signature | None:
    """The first catalogue entry of ``family`` that matches a record's text."""
    for sig in FAMILY_SIGNATURES.get(family, ()):
        if sig.literal in text and (sig.pattern is None or sig.pattern.search(text)):
            return sig
    return None


# Connection lifecycle lines: a busy broker writes one per connection opened or closed (millions a
# day under churn). They are counted per time slice (the load curve, idle times), not turned into
# Events, except at the start of a file and just after an incident (where they pair the client's
# reconnect with the broker's accept for the clock offset).
COUNTED = frozenset({"rabbitmq.conn.accepting", "rabbitmq.conn.closed_clean", "redis.client.accepted",
                     "redis.client.closed"})
# What the load curve counts per slice, per family (task arrivals; connections accepted).
ACTIVITY_LITERALS = {"celery": b"] received", "celery-3.1": b"Received task", "rabbitmq": b"accepting AMQP connection",
                     "redis": b"Accepted "}
TRACEBACK = b"Traceback (most recent call last)"
CONNECTION_ERROR_BYTES = re.compile(CONNECTION_ERROR.pattern.encode())


def literals(family: str, counted: bool = True) -> tuple[bytes, ...]:
    """The byte strings the fast scan looks for in a source of ``family`` (without the lifecycle
    lines when ``counted`` is False)."""
    return tuple(sorted({lit for lit, _ in expressions(family, counted)}))


# A pattern that can match only inside one line (no '.', '\s', anchors or negated classes), and
# that holds the entry's literal, can replace the literal in the scan: "access to vhost" alone is
# on every "authenticated and granted access to vhost" line of a busy broker, the pattern is not.
_CROSSES_LINES = re.compile(r"(?<!\\)[.$^]|\\s|\[\^")


def expressions(family: str, counted: bool = True) -> tuple[tuple[bytes, bytes | None], ...]:
    """(literal, line-local pattern or None) per catalogue entry of ``family``, for the scan."""
    found: dict[tuple[bytes, bytes | None], None] = {}
    by_literal: dict[str, list[Signature]] = {}
    for sig in FAMILY_SIGNATURES.get(family, ()):
        if counted or sig.id not in COUNTED:
            by_literal.setdefault(sig.literal, []).append(sig)
    for literal, sigs in by_literal.items():
        local = [s.pattern.pattern for s in sigs if s.pattern is not None and literal.strip() in s.pattern.pattern
                 and not _CROSSES_LINES.search(s.pattern.pattern)]
        if len(local) == len(sigs):  # every entry of this literal has a narrower line-local pattern
            for pattern in local:
                found[(literal.encode(), pattern.encode())] = None
        else:
            found[(literal.encode(), None)] = None
    if family == "celery":
        found[(TRACEBACK, None)] = None
    return tuple(found)
