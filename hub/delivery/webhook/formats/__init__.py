"""The webhook worker's standards formats: xAPI statements into an LRS, Caliper envelopes into a
Caliper endpoint.

They ride on the webhook machinery (the rest of `hub/delivery/webhook/`): the same durable
per-client outbox, lease, ordering, retry schedule and dead letters. A sender only turns a batch of
queued event frames into requests (body, auth headers) and the endpoint's answers into an `Outcome`.
docs/endpoints.md has the status-code table.
"""
