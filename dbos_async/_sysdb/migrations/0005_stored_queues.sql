-- Queues registered with DBOS.register_queue: their settings, shared by every process of the
-- application (a change is announced with a NOTIFY). A NULL limit means no limit.
CREATE TABLE queues (
    queue_id                        text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name                            text NOT NULL UNIQUE,
    concurrency                     integer,
    worker_concurrency              integer,
    rate_limit_max                  integer,
    rate_limit_period_sec           double precision,
    priority_enabled                boolean NOT NULL DEFAULT false,
    partition_queue                 boolean NOT NULL DEFAULT false,
    partition_concurrency           integer,
    partition_worker_concurrency    integer,
    partition_rate_limit_max        integer,
    partition_rate_limit_period_sec double precision,
    polling_interval_sec            double precision NOT NULL DEFAULT 1.0,
    created_at                      bigint NOT NULL,
    updated_at                      bigint NOT NULL,
    application_name                text
);

-- A cancelled queued workflow whose code is still running (a sync step in a thread cannot be
-- interrupted) keeps its slot in its queue (named here: cancelling clears queue_name) until the
-- executor running it reports that the code returned.
ALTER TABLE workflow_status ADD COLUMN held_queue_slot text;
CREATE INDEX workflow_status_held_slots ON workflow_status (held_queue_slot, queue_partition_key)
    WHERE held_queue_slot IS NOT NULL;
