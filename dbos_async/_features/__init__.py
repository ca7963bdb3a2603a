"""The engine's features, on the core and the system database.

Workflows and steps (execution, replay, recovery, decorators, handles), messages, events and
durable sleep, streams, queues and their dispatcher, cron schedules, management and listings,
and executor heartbeats with adoption. Each feature imports the core and ``_sysdb``, and only
the features below it; none imports the engine that assembles them or the ``DBOS`` facade.
"""
