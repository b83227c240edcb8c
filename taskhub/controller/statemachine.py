"""What the hub's and the scheduler's bookkeeping share: events in, instructions out.

A subclass fills `_handlers` (event type -> method returning a list of instructions);
`handle(*events)` is the only way its state changes, so tests drive it event by event.
"""


class StateMachine:
    _handlers = {}

    def handle(self, *events):
        out = []
        for event in events:
            out.extend(self._handlers[type(event)](event))
        return out
