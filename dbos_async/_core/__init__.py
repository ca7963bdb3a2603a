"""The core: what every feature stands on.

Errors, argument checks, serialization, configuration, the loop bridge, the registry of
workflows and queues, roles, the request being served, the runtime's state, the context of
the code running now, tracing, and the public status types. Nothing here imports a feature.
"""
