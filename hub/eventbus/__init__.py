"""Ingest from the Open edX event bus: `rthub ingest event-bus --topic analytics --group rthub`.

Open edX can route tracking events onto the event bus (event-tracking's `EventBusRoutingBackend`, signal
`org.openedx.analytics.tracking.event.emitted.v1`), which `edx-event-bus-redis` writes to a Redis stream
named after the topic, one Avro-encoded `event_data` field per message plus CloudEvent headers. This
package reads that stream with a consumer group and carries each event into rthub's stream exactly as
the LMS plug-in would have: `decode` turns a message into the plug-in's normalised event, `sink` appends
it (or its dead letter) idempotently, `consumer` runs the read / claim / acknowledge loop. It runs next
to the LMS, not in the hub server, and needs the `eventbus` extra (openedx-events, fastavro).
"""
