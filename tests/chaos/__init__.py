"""The chaos suite: worker processes SIGKILLed and Postgres restarted under a shared queue.

``python -m tests.chaos`` runs the full form; ``tests/chaos/test_chaos.py`` the reduced one.
"""
