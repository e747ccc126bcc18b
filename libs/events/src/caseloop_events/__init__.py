"""caseloop's shared library, in three parts (docs/adr/0013):

- ``caseloop_events.contracts``: the event contracts and the shared kernel of the loop; no runtime imports;
- ``caseloop_events.runtime``: what every service is built from (storage, consumer, relay, HTTP, auth);
- ``caseloop_events.testing``: fixtures, fakes and the local brokers, for tests and development only.
"""
