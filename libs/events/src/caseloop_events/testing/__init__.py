"""What tests (and the local development stack) use and production never does: pytest fixtures
with real brokers and databases, fakes of the runtime for fast unit tests, and the local
Kafka-protocol brokers (noida-db, Tansu), which are development dependencies only.
"""
