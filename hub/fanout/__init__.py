"""Fan-out: from the live feed to each subscriber's queue, rendering every frame once.

`dispatch` matches each entry against the connected sockets and offers it to those entitled to it;
`render` anonymises, translates and encodes it once per (translator, consumer type) into a `Frame`;
`subscriber` is one socket's bounded queue and its end-of-tick flush; `stage` is the shared render
stage of `rthub serve --workers N`. Nothing here imports control, delivery or anything above.
"""
