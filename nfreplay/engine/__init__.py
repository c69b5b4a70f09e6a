"""The daemons' loops: the one place where the session machine's commands and the assist's
verdicts become I/O. Adapters come in through constructors.

Modules:
    online      nfreplay-online's engine: captured packets into the session table, the
                assistants' records back, the commands out (compiled, setup.py)
    online_run  its run: waiting for a control connection, the loop, warnings, the stats
                published once a second, an offline replay's end, the teardown
    assist      nfreplay-assist's engine: every queued reply gets one verdict (DROP) and its
                header goes to the connection that announced the session
    assist_run  its run: the loop, the queue's drop watch, the stats published
    routing     the assist's session routes: who announced what, parked replies, collisions
    recorder    the response recording's side branch of both loops (`--record-responses`)
    watch       looks for trouble worth a warning (drops rising, handshakes failing)
"""
