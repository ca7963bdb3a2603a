-- The system database: workflows, their step checkpoints, messages, events and streams.
-- Runs with search_path set to the configured schema; never edit a released migration.

CREATE TABLE workflow_status (
    workflow_uuid              text PRIMARY KEY,
    status                     text NOT NULL,
    name                       text NOT NULL,
    class_name                 text,
    config_name                text,
    authenticated_user         text,
    assumed_role               text,
    authenticated_roles        text[],
    inputs                     bytea,
    output                     bytea,
    error                      bytea,
    serialization              text,
    executor_id                text,
    application_version        text,
    application_id             text,
    created_at                 bigint NOT NULL,
    updated_at                 bigint NOT NULL,
    recovery_attempts          bigint NOT NULL DEFAULT 0,
    queue_name                 text,
    deduplication_id           text,
    priority                   integer NOT NULL DEFAULT 0,
    queue_partition_key        text,
    workflow_timeout_ms        bigint,
    workflow_deadline_epoch_ms bigint,
    started_at_epoch_ms        bigint,
    forked_from                text,
    was_forked_from            boolean NOT NULL DEFAULT false,
    parent_workflow_id         text,
    delay_until_epoch_ms       bigint,
    rate_limited               boolean NOT NULL DEFAULT false,
    completed_at               bigint,
    attributes                 jsonb,
    application_name           text,
    -- Set by a waiter in another process: only then does completion send a NOTIFY.
    awaited                    boolean NOT NULL DEFAULT false
);

CREATE INDEX workflow_status_created_at ON workflow_status (created_at);
-- Recovery: this executor's unfinished workflows.
CREATE INDEX workflow_status_pending ON workflow_status (executor_id, application_version)
    WHERE status = 'PENDING';
-- Dequeue and queue listings (only queued workflows: a direct start writes no entry here).
CREATE INDEX workflow_status_in_flight ON workflow_status (queue_name, status, priority, created_at)
    WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL;
CREATE INDEX workflow_status_partitions ON workflow_status
    (queue_name, queue_partition_key, status, priority, created_at)
    WHERE status IN ('ENQUEUED', 'PENDING') AND queue_partition_key IS NOT NULL;
-- Rate limits count the workflows a queue started within a window.
CREATE INDEX workflow_status_started ON workflow_status (queue_name, started_at_epoch_ms)
    WHERE started_at_epoch_ms IS NOT NULL AND queue_name IS NOT NULL;
CREATE INDEX workflow_status_delayed ON workflow_status (delay_until_epoch_ms)
    WHERE status = 'DELAYED';
CREATE UNIQUE INDEX workflow_status_dedup_id ON workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL;
CREATE INDEX workflow_status_parent ON workflow_status (parent_workflow_id)
    WHERE parent_workflow_id IS NOT NULL;
CREATE INDEX workflow_status_forked_from ON workflow_status (forked_from)
    WHERE forked_from IS NOT NULL;

CREATE TABLE operation_outputs (
    workflow_uuid         text NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    function_id           integer NOT NULL,
    function_name         text NOT NULL,
    output                bytea,
    error                 bytea,
    serialization         text,
    child_workflow_id     text,
    started_at_epoch_ms   bigint,
    completed_at_epoch_ms bigint,
    PRIMARY KEY (workflow_uuid, function_id)
);

CREATE TABLE notifications (
    message_uuid        text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    -- Strict first-in first-out order per (destination, topic); timestamps tie.
    seq                 bigint GENERATED ALWAYS AS IDENTITY,
    destination_uuid    text NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    topic               text NOT NULL,
    message             bytea,
    serialization       text,
    created_at_epoch_ms bigint NOT NULL,
    consumed            boolean NOT NULL DEFAULT false
);
CREATE INDEX notifications_unconsumed ON notifications (destination_uuid, topic, seq)
    WHERE NOT consumed;

CREATE TABLE workflow_events (
    workflow_uuid text NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key           text NOT NULL,
    value         bytea,
    serialization text,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE workflow_events_history (
    workflow_uuid text NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    function_id   integer NOT NULL,
    key           text NOT NULL,
    value         bytea,
    serialization text,
    PRIMARY KEY (workflow_uuid, key, function_id)
);

CREATE TABLE streams (
    workflow_uuid text NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key           text NOT NULL,
    "offset"      integer NOT NULL,
    value         bytea,
    serialization text,
    function_id   integer,
    PRIMARY KEY (workflow_uuid, key, "offset")
);
