"""`rthub backfill`: history from tracking logs into one client, and only that one.

Design. A backfill never goes through the event stream: the stream is shared (every WebSocket and
webhook consumer entitled to an event would get it, and a large history would push live events out of
its retention). Instead `rthub backfill` is its own process and does for one client what the hub does
for each live event, with the hub's own parts:

- read (`sources.py`): files, directories, globs or object-store URLs, plain or gzip, each line read as
  `rthub publish` reads it (`hub.logimport`);
- sort (`prepare.py`): the time window, the client's grant (`rthub_lms.grants`, the matcher of the
  hub's match stage), the plug-in's limits, then the learner's actor from the same anonymiser store as
  live (`hub.anonymise.RedisIdStore`: a learner has the same actor in backfilled and live statements)
  and the client's translator, encoded by the live path's `hub.fanout.render.event_frame`, so statement
  ids are the same deterministic ids as live;
- queue (`store.py`): a per-client backfill queue, apart from the client's live outbox, committed in one
  transaction with the checkpoint (`keys.backfill_checkpoint`), so a run killed at any point resumes
  exactly where its last commit left it;
- deliver (`deliver.py`): from that queue, in this process, with the hub's `WebhookSender` and the
  client's format (webhook signatures, LRS, Caliper endpoint, endpoint credentials), so the hub's delivery
  worker for the client, and therefore its live events, never waits behind history.

One run per client at a time (`keys.backfill_lease`). `job.py` runs it, `progress.py` shows it,
`cli.py` is the command.
"""
