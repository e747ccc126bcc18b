"""caseloop's public event contracts and the runtime every service shares.

Contracts (envelope, payload models, registry) are the only thing services share about
each other; the runtime (outbox relay, consumer, case log, topic admin, broker launcher)
is shared code so that all four services keep the same delivery guarantees.
"""
