"""Standards endpoints: xAPI statements into an LRS, Caliper envelopes into a Caliper endpoint.

They are delivery *formats* on the webhook machinery (`hub/delivery/webhook/`): the same durable
per-client outbox, lease, ordering, retry schedule and dead letters. A sender only turns a batch of
queued event frames into requests (body, auth headers) and the endpoint's answers into an `Outcome`.
docs/endpoints.md has the status-code table.
"""
