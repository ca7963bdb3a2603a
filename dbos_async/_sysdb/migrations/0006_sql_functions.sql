-- SQL entry points for any language and for an application's own transactions (the
-- transactional outbox): enqueue_workflow and send_message, with DBOS's parameter names, order
-- and defaults, so SQL written for DBOS works here. Values arrive as JSON and are stored as
-- portable JSON (UTF-8 text in the bytea columns, format name 'portable_json'), which Python
-- workflows read. Both announce their work with NOTIFY on the engine's channels (see
-- _sysdb/_notify.py: 'dbos_async_queues' with 'token|due|queue', an empty token being another
-- process's; 'dbos_async_messages' with 'workflow::topic'); NOTIFY is transactional, so work
-- enqueued or sent in a transaction that rolls back is neither written nor announced.
-- They run with search_path = pg_catalog, <this schema>, pg_temp (set at the end).

CREATE FUNCTION enqueue_workflow(
    workflow_name        text,
    queue_name           text,
    positional_args      json[]  DEFAULT ARRAY[]::json[],
    named_args           json    DEFAULT '{}'::json,
    class_name           text    DEFAULT NULL,
    config_name          text    DEFAULT NULL,
    workflow_id          text    DEFAULT NULL,
    app_version          text    DEFAULT NULL,
    timeout_ms           bigint  DEFAULT NULL,
    deadline_epoch_ms    bigint  DEFAULT NULL,
    deduplication_id     text    DEFAULT NULL,
    priority             integer DEFAULT NULL,
    queue_partition_key  text    DEFAULT NULL,
    authenticated_user   text    DEFAULT NULL,
    authenticated_roles  text    DEFAULT NULL,
    delay_until_epoch_ms bigint  DEFAULT NULL,
    application_name     text    DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
AS $function$
DECLARE
    -- Parameters are written qualified (enqueue_workflow.x): many share a column's name.
    v_id       text := COALESCE(enqueue_workflow.workflow_id, gen_random_uuid()::text);
    v_now      bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    v_roles    text[];
    v_holder   text;
    v_inserted boolean;
BEGIN
    IF enqueue_workflow.workflow_name IS NULL OR enqueue_workflow.workflow_name = '' THEN
        RAISE EXCEPTION 'enqueue_workflow: workflow_name must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_workflow.queue_name IS NULL OR enqueue_workflow.queue_name = '' THEN
        RAISE EXCEPTION 'enqueue_workflow: queue_name must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_workflow.workflow_id = '' THEN
        RAISE EXCEPTION 'enqueue_workflow: workflow_id must be NULL (a new UUID) or non-empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_workflow.named_args IS NOT NULL
        AND json_typeof(enqueue_workflow.named_args) <> 'object' THEN
        RAISE EXCEPTION 'enqueue_workflow: named_args must be a JSON object, got %',
            enqueue_workflow.named_args
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_workflow.timeout_ms <= 0 THEN
        RAISE EXCEPTION 'enqueue_workflow: timeout_ms must be positive, got %',
            enqueue_workflow.timeout_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_workflow.delay_until_epoch_ms < 0 THEN
        RAISE EXCEPTION 'enqueue_workflow: delay_until_epoch_ms must not be negative, got %',
            enqueue_workflow.delay_until_epoch_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Roles come as a JSON array of strings, as DBOS takes them.
    IF enqueue_workflow.authenticated_roles IS NOT NULL THEN
        IF json_typeof(enqueue_workflow.authenticated_roles::json) <> 'array' THEN
            RAISE EXCEPTION 'enqueue_workflow: authenticated_roles must be a JSON array of '
                'strings, got %', enqueue_workflow.authenticated_roles
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_roles := ARRAY(
            SELECT json_array_elements_text(enqueue_workflow.authenticated_roles::json)
        );
    END IF;
    IF enqueue_workflow.deduplication_id IS NOT NULL THEN
        SELECT w.workflow_uuid INTO v_holder FROM workflow_status AS w
        WHERE w.queue_name = enqueue_workflow.queue_name
            AND w.deduplication_id = enqueue_workflow.deduplication_id
            AND w.workflow_uuid <> v_id;
        IF FOUND THEN
            RAISE EXCEPTION 'enqueue_workflow: queue % already holds workflow % with '
                'deduplication ID %', enqueue_workflow.queue_name, v_holder,
                enqueue_workflow.deduplication_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'workflow_status_dedup_id';
        END IF;
    END IF;

    -- An existing workflow of this ID is left as it is (an enqueue retried is one enqueue).
    INSERT INTO workflow_status (
        workflow_uuid, status, name, class_name, config_name, inputs, serialization,
        application_version, authenticated_user, authenticated_roles,
        workflow_timeout_ms, workflow_deadline_epoch_ms, queue_name, deduplication_id, priority,
        queue_partition_key, delay_until_epoch_ms, created_at, updated_at, recovery_attempts,
        application_name
    ) VALUES (
        v_id,
        CASE WHEN enqueue_workflow.delay_until_epoch_ms IS NULL THEN 'ENQUEUED' ELSE 'DELAYED' END,
        enqueue_workflow.workflow_name,
        enqueue_workflow.class_name,
        enqueue_workflow.config_name,
        convert_to(
            json_build_object(
                'positionalArgs', COALESCE(enqueue_workflow.positional_args, ARRAY[]::json[]),
                'namedArgs', COALESCE(enqueue_workflow.named_args, '{}'::json)
            )::text,
            'UTF8'
        ),
        'portable_json',
        enqueue_workflow.app_version,
        enqueue_workflow.authenticated_user,
        v_roles,
        enqueue_workflow.timeout_ms,
        enqueue_workflow.deadline_epoch_ms,
        enqueue_workflow.queue_name,
        enqueue_workflow.deduplication_id,
        COALESCE(enqueue_workflow.priority, 0),
        enqueue_workflow.queue_partition_key,
        enqueue_workflow.delay_until_epoch_ms,
        v_now,
        v_now,
        0,
        enqueue_workflow.application_name
    )
    ON CONFLICT (workflow_uuid) DO NOTHING
    RETURNING true INTO v_inserted;

    IF v_inserted THEN
        PERFORM pg_notify(
            'dbos_async_queues',
            '|' || COALESCE(enqueue_workflow.delay_until_epoch_ms::text, '') || '|'
                || enqueue_workflow.queue_name
        );
    END IF;
    RETURN v_id;
END;
$function$;

COMMENT ON FUNCTION enqueue_workflow(
    text, text, json[], json, text, text, text, text, bigint, bigint, text, integer, text, text,
    text, bigint, text
) IS 'Enqueue a workflow (its arguments as JSON) on a queue; returns its ID. Runs when the '
    'calling transaction commits.';

CREATE FUNCTION send_message(
    destination_id text,
    message        json,
    topic          text DEFAULT NULL,
    message_id     text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
AS $function$
DECLARE
    -- The engine stores "no topic" as this sentinel (_sysdb/_messages.py, NULL_TOPIC).
    v_topic text := COALESCE(send_message.topic, '__null__topic__');
    v_sent  boolean;
BEGIN
    IF send_message.destination_id IS NULL OR send_message.destination_id = '' THEN
        RAISE EXCEPTION 'send_message: destination_id must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF send_message.message_id = '' THEN
        RAISE EXCEPTION 'send_message: message_id must be NULL (a new UUID) or non-empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM workflow_status AS w WHERE w.workflow_uuid = send_message.destination_id
    ) THEN
        RAISE EXCEPTION 'send_message: no workflow has the ID %', send_message.destination_id
            USING ERRCODE = 'foreign_key_violation',
                CONSTRAINT = 'notifications_destination_uuid_fkey';
    END IF;

    -- A message ID already sent is not sent again.
    INSERT INTO notifications (
        message_uuid, destination_uuid, topic, message, serialization, created_at_epoch_ms
    ) VALUES (
        COALESCE(send_message.message_id, gen_random_uuid()::text),
        send_message.destination_id,
        v_topic,
        convert_to(send_message.message::text, 'UTF8'),
        'portable_json',
        floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    )
    ON CONFLICT (message_uuid) DO NOTHING
    RETURNING true INTO v_sent;

    IF v_sent THEN
        PERFORM pg_notify('dbos_async_messages', send_message.destination_id || '::' || v_topic);
    END IF;
END;
$function$;

COMMENT ON FUNCTION send_message(text, json, text, text) IS
    'Send a message (JSON) to a workflow, on a topic; delivered when the calling transaction '
    'commits.';

-- Resolve names in this schema, never in a caller's: builtins first, temporary objects last.
DO $migration$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION %1$I.enqueue_workflow(text, text, json[], json, text, text, text, '
        'text, bigint, bigint, text, integer, text, text, text, bigint, text) '
        'SET search_path = pg_catalog, %1$I, pg_temp',
        current_schema()
    );
    EXECUTE format(
        'ALTER FUNCTION %1$I.send_message(text, json, text, text) '
        'SET search_path = pg_catalog, %1$I, pg_temp',
        current_schema()
    );
END
$migration$;
