"""The shared render stage of `rthub serve --workers N`: per-event work done once for all workers.

Without it every worker reads the live feed and matches, anonymises, translates and encodes every
event its sockets may see: that work is repeated N times while only the socket writes are split N
ways. With `--workers N` (N > 1) `rthub serve` also runs one render-stage process (`server.py`, its
process `hub.render_stage`): it reads the live feed, renders each event once per (translator,
consumer type) that some active client is entitled to, and streams the result as one `Bundle` per
event (`bundle.py`) to every worker over a Unix socket. A worker (`feed.py`) matches a bundle
against its own sockets and writes; it renders only what a bundle lacks (a client created a moment
ago) from the raw event the bundle carries. When the stage is away a worker follows the live feed
itself, and switches back without a gap or a duplicate once the stage returns.
"""
