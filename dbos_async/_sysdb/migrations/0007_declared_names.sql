-- What each application's processes declared in code when they last launched: workflow
-- functions, and queues with their settings (JSON, as the queues table's columns). A client,
-- which runs no workflow code, checks the names it is given against it.
CREATE TABLE declared_names (
    application_name text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('workflow', 'queue')),
    name             text NOT NULL,
    settings         jsonb,
    declared_at      bigint NOT NULL,
    PRIMARY KEY (application_name, kind, name)
);
