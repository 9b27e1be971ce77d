"""Webhook delivery: a durable per-client outbox in Redis, drained by one signed, retrying worker per client.

Data path: `Fanout` hands every live entry to `WebhookRouter.route` -> entitled webhook clients get the
rendered event frame appended to `{prefix}outbox:{client}` (idempotently: the entry id is the cursor)
-> exactly one hub instance holds `{prefix}wh:lease:{client}` and POSTs the outbox in order, retrying
per the schedule -> dead letters in `{prefix}deadletters` after the last attempt. docs/webhooks.md
states the guarantees and the websocket+webhook switch semantics.
"""
