"""The hub's engine bookkeeping, event by event."""
import pytest

from taskhub.controller.hubstate import (AskToRejoin, ChannelReady, DirectDone, DirectSent,
                                         EngineIsDown, EngineIsUp, HubState, Pong,
                                         RegistrationError, Tick, Unregister)
from taskhub.controller.scheduler import FailTask


def up(hub, uuid, now=0.0):
    rec = hub.register(uuid, {"pid": 1}, now)
    out = hub.handle(*(ChannelReady(uuid, c) for c in ("mux", "task", "control")))
    return rec, out


def test_engine_is_up_once_every_channel_said_hello():
    hub = HubState()
    hub.register("u0", {}, 0.0)
    assert hub.handle(ChannelReady("u0", "mux"), ChannelReady("u0", "task")) == []
    assert hub.up_ids() == []
    assert hub.handle(ChannelReady("u0", "control")) == [EngineIsUp(0, "u0")]
    assert hub.up_ids() == [0] and hub.uuid_of(0) == "u0"


def test_ids_are_never_reused():
    hub = HubState()
    up(hub, "u0")
    hub.handle(Unregister("u0"))
    rec, _ = up(hub, "u1")
    assert rec.id == 1


def test_registering_twice_is_refused():
    hub = HubState()
    hub.register("u0", {}, 0.0)
    with pytest.raises(RegistrationError, match="already registered"):
        hub.register("u0", {}, 0.0)
    with pytest.raises(RegistrationError):
        hub.register("", {}, 0.0)


def test_silence_past_the_timeout_is_death_and_fails_direct_tasks():
    hub = HubState(heartbeat_timeout=3.0)
    up(hub, "u0")
    up(hub, "u1")
    hub.handle(DirectSent("m1", "u0"), DirectSent("m2", "u0"), DirectDone("m2"))
    hub.handle(Pong("u1", 2.5))
    out = hub.handle(Tick(3.5))
    assert out == [EngineIsDown(0, "u0", "engine 0 missed heartbeats for 3.5s"),
                   FailTask("m1", "EngineError",
                            "engine 0 missed heartbeats for 3.5s while running this task")]
    assert hub.up_ids() == [1]
    assert hub.handle(Tick(5.0)) == []


def test_direct_task_to_an_unknown_engine_fails():
    hub = HubState()
    assert hub.handle(DirectSent("m", "ghost")) == [
        FailTask("m", "EngineError", "the target engine is not registered")]


def test_an_engine_dead_of_silence_that_pongs_again_is_asked_to_rejoin():
    hub = HubState(heartbeat_timeout=1.0, ask_interval=0.5)
    up(hub, "u0")
    hub.handle(Tick(2.0))
    assert hub.handle(Pong("u0", 2.1)) == [AskToRejoin("u0")]
    assert hub.handle(Pong("u0", 2.3)) == []           # not again at once
    assert hub.handle(Pong("u0", 2.7)) == [AskToRejoin("u0")]
    assert hub.up_ids() == [] and hub.id_of("u0") is None  # never taken back as it was


def test_pongs_from_strangers_and_from_engines_that_left_ask_nothing():
    hub = HubState(heartbeat_timeout=1.0)
    up(hub, "u0")
    hub.handle(Unregister("u0"))
    assert hub.handle(Pong("u0", 5.0), Pong("nobody", 5.0)) == []


def test_a_stalled_hub_does_not_count_its_own_deafness_as_silence():
    """A 15 s query on the hub's one thread must not kill engines that answered all along."""
    hub = HubState(heartbeat_timeout=10.0, period=1.0)
    up(hub, "u0")
    hub.handle(Tick(1.0), Pong("u0", 1.0))
    assert hub.handle(Tick(16.0)) == []          # the hub was busy from 1 s to 16 s
    assert hub.up_ids() == [0]
    # silence after the stall still counts: ticks every second, no pong, dead after 10 s
    assert hub.handle(*(Tick(float(t)) for t in range(17, 26))) == []
    assert [type(i).__name__ for i in hub.handle(Tick(26.0))] == ["EngineIsDown"]


def test_without_a_period_every_silent_second_counts():
    hub = HubState(heartbeat_timeout=10.0)
    up(hub, "u0")
    hub.handle(Tick(1.0))
    assert [type(i).__name__ for i in hub.handle(Tick(16.0))] == ["EngineIsDown"]
