-- Debouncing: a debounced workflow waits DELAYED under its debounce key (its deduplication ID);
-- each call within the period moves its start and replaces its inputs, never past the deadline
-- the first call set. Leaving DELAYED releases the key, so a later call starts a new workflow.
ALTER TABLE workflow_status
    ADD COLUMN is_debounced               boolean NOT NULL DEFAULT false,
    ADD COLUMN debounce_deadline_epoch_ms bigint;
