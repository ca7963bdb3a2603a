-- Executors' heartbeats. Each process updates its row every few seconds (the database's clock,
-- epoch milliseconds); a live process adopts the PENDING workflows of an executor whose
-- heartbeat lapsed, so a fleet recovers a dead member's work without it coming back.
CREATE TABLE executors (
    executor_id         text PRIMARY KEY,
    application_version text,
    hostname            text,
    pid                 integer,
    heartbeat_at        bigint NOT NULL
);
