-- Deleting a workflow (delete_workflows, garbage collection) deletes its messages through the
-- foreign key, and fork looks up the consumed ones too. The only index by destination was the
-- partial index of unconsumed messages, so each deleted workflow read the whole table: 8 ms per
-- workflow at 100,000 messages, and growing with every message ever received.
CREATE INDEX notifications_destination ON notifications (destination_uuid);
