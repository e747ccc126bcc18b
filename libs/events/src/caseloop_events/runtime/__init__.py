"""The machinery every service is built from: storage and the unit of work, the consumer and the
outbox relay, Kafka settings and topics, the HTTP layer, credentials and the personal-data rules,
and the composition root that turns a service's definition into a running service.

It imports the contracts, never the testing part.
"""
