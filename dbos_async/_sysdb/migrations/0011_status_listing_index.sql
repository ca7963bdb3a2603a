-- list_workflows(status=...) for a status other than SUCCESS: without this, a listing of a rare
-- status (ERROR, ENQUEUED, DELAYED, ...) walked the created_at index backwards through the
-- whole history to find its page. SUCCESS rows, the bulk of any history, are left out (a
-- listing of them finds its page in the first rows of created_at).
CREATE INDEX workflow_status_by_status ON workflow_status (status, created_at)
    WHERE status <> 'SUCCESS';
