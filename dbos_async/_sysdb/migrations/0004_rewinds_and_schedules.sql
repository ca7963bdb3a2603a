-- A consumed message remembers the recv that took it, so rewinding a workflow to a step can
-- drop the messages its discarded run consumed; a workflow started by a schedule names it.
ALTER TABLE notifications ADD COLUMN consumed_by_function_id integer;
ALTER TABLE workflow_status ADD COLUMN schedule_name text;
