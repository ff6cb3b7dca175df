#!/usr/bin/env bash
# The test command: install the package with its test extras into .venv, start the brokers the
# tests need if they are down, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# --fresh: the same, from a clean clone with a minimal environment (scripts/fresh_check.sh).
if [ "${1:-}" = "--fresh" ]; then
    shift
    exec bash scripts/fresh_check.sh "$@"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# RabbitMQ: start it when it is down, enable the management API the broker probe reads.
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
fi
rabbitmqctl -q await_startup --timeout 120
rabbitmq-plugins -q enable rabbitmq_management >/dev/null
for _ in $(seq 60); do
    (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null && break
    sleep 1
done

# Redis: the same command the machine uses, when nothing answers on 6379.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

# Headless Chromium for the HTML report's browser tests, nftables for repro's kernel middlebox
# (netns + conntrack NAT; iproute2 is there already): Debian's packages, one update when missing.
missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v nft >/dev/null || missing="$missing nftables"
if [ -n "$missing" ]; then
    echo "installing Debian's$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

.venv/bin/ruff check src tests scripts bench
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
