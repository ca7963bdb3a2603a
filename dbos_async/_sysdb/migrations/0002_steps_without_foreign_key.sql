-- Step checkpoints no longer reference workflow_status through a foreign key.
--
-- The key's check runs once per inserted row and takes a KEY SHARE lock on the workflow's row,
-- which dirties that row's page on every step; under load it cost about a tenth of the
-- checkpoint throughput. It guarded nothing the engine relies on: every step insert already
-- requires its workflow to exist and be PENDING, and deleting a workflow deletes its steps in
-- the same statement.
ALTER TABLE operation_outputs DROP CONSTRAINT IF EXISTS operation_outputs_workflow_uuid_fkey;
