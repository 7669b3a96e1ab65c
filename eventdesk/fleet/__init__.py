"""A fleet: several ``eventdesk run --fleet nats://...`` agents share one workspace and split its
models between them through a NATS JetStream key-value bucket (leases taken and renewed by
compare-and-set, resume points kept beside them). docs/fleet.md describes it for users.

Its parts: settings.py (options, bucket and key names), lease.py (the lease rules, pure logic),
bucket.py (the bucket's reads and writes), progress.py (what an agent records of a model it runs,
and where a model taken over resumes), agent.py (the agent beside a Runtime), status.py
(``eventdesk fleet status``).
"""
