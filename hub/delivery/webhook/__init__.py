"""Webhook delivery: a durable, capped per-client outbox in Redis, drained by one signed, retrying worker per client.

Data path: `WebhookRouter.follow` reads the event stream from the saved cursor `{prefix}wh:routed`
-> entitled webhook clients get the rendered event frame appended to `{prefix}{client}:outbox`
(idempotently: the entry id is the cursor) -> exactly one hub instance holds `{prefix}{client}:wh:lease`
and hands the outbox, in order, to a `Sender` (one signed POST), retrying per the schedule -> dead
letters in `{prefix}{client}:deadletters` after the last attempt, an abort, or when the endpoint is disabled
(410, or the breaker). docs/webhooks.md states the guarantees and the websocket+webhook switch.
"""
