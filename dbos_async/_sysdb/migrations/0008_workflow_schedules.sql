-- Schedules stored in the database (DBOS.create_schedule, apply_schedules) and those declared
-- in code (@DBOS.scheduled, written at launch with declared_in_code). A change is announced
-- with a NOTIFY; each tick is enqueued under the workflow ID sched-<name>-<tick>, so it runs
-- once however many processes see it. last_fired_at is the last tick enqueued, in ISO 8601.
CREATE TABLE workflow_schedules (
    schedule_id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    schedule_name         text NOT NULL UNIQUE,
    workflow_name         text NOT NULL,
    workflow_class_name   text,
    schedule              text NOT NULL,
    status                text NOT NULL DEFAULT 'ACTIVE',
    context               bytea,
    context_serialization text,
    last_fired_at         text,
    automatic_backfill    boolean NOT NULL DEFAULT false,
    cron_timezone         text,
    queue_name            text,
    declared_in_code      boolean NOT NULL DEFAULT false,
    created_at            bigint NOT NULL,
    updated_at            bigint NOT NULL,
    application_name      text
);
CREATE INDEX workflow_schedules_application ON workflow_schedules (application_name);
