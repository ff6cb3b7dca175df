"""One module per log rule that the original rules/logs_rules.py did not hold; each module's rule
is registered (rules/registry.py) and run by logs_rules.evaluate."""

from __future__ import annotations

from celery_doctor.rules.context import Rule
from celery_doctor.rules.logs.client_pool import redis_client_pool_full
from celery_doctor.rules.logs.connect_close import connect_time_close
from celery_doctor.rules.logs.consumer_cancelled import consumer_cancelled
from celery_doctor.rules.logs.default_url import default_broker_url
from celery_doctor.rules.logs.failover import failover
from celery_doctor.rules.logs.flow_forgotten import forgotten_idle_flow
from celery_doctor.rules.logs.frame_errors import frame_errors
from celery_doctor.rules.logs.known_bugs import known_bug, reported_known_bad
from celery_doctor.rules.logs.long_task_client import long_task_client_side
from celery_doctor.rules.logs.mixed_settings import mixed_setting_names
from celery_doctor.rules.logs.no_incident import no_incident
from celery_doctor.rules.logs.rabbitmq_limits import rabbitmq_count_limits
from celery_doctor.rules.logs.rabbitmq_partition import rabbitmq_partition
from celery_doctor.rules.logs.rabbitmq_refusals import global_qos_refused, transient_queue_refused
from celery_doctor.rules.logs.read_only_replica import read_only_replica
from celery_doctor.rules.logs.redis_commands import redis_refuses_commands
from celery_doctor.rules.logs.redis_limits import redis_limits
from celery_doctor.rules.logs.redis_loading import redis_loading
from celery_doctor.rules.logs.redis_tls_params import redis_tls_params_refused
from celery_doctor.rules.logs.service_name import service_name_unresolved
from celery_doctor.rules.logs.silent_idle import silent_idle_drops
from celery_doctor.rules.logs.stale_producer import stale_pooled_producer
from celery_doctor.rules.logs.tls import tls_mismatch
from celery_doctor.rules.logs.vhost_down import vhost_down
from celery_doctor.rules.logs.worker_conn_cut import worker_connection_cut

RULES: tuple[Rule, ...] = (known_bug, reported_known_bad, redis_limits, long_task_client_side, default_broker_url,
                           failover, vhost_down, silent_idle_drops, connect_time_close, stale_pooled_producer,
                           read_only_replica, tls_mismatch, global_qos_refused, transient_queue_refused,
                           service_name_unresolved, forgotten_idle_flow, worker_connection_cut, redis_refuses_commands,
                           redis_client_pool_full, redis_tls_params_refused, rabbitmq_count_limits,
                           consumer_cancelled, frame_errors, rabbitmq_partition, redis_loading,
                           mixed_setting_names)

__all__ = ["RULES", "no_incident"]  # no_incident: run by logs_rules.evaluate when no incident was found
