"""A server opens a few connections at a time; the others wait unread, first come first served."""

from __future__ import annotations

from twisted.internet.task import Clock

from schedulerproj.admission import Admission


class Connection:
    """What admission sees of a twisted TCP connection."""

    def __init__(self) -> None:
        self.connected, self.disconnecting, self.reading = True, False, True

    def stopReading(self) -> None:  # twisted's names
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def test_past_the_limit_connections_wait_unread_and_come_in_first_come_first_served() -> None:
    admission = Admission(2, hold_s=1.0, clock=Clock())
    first, second, third, fourth = (Connection() for _ in range(4))
    for connection in (first, second, third, fourth):
        admission.arrived(connection)

    assert [c.reading for c in (first, second, third, fourth)] == [True, True, False, False]
    admission.opened(second)
    assert third.reading and not fourth.reading
    admission.opened(second)  # counted out already: nothing more comes in
    assert not fourth.reading
    admission.opened(first)
    assert fourth.reading


def test_a_connection_closed_while_waiting_gives_its_turn_to_the_next() -> None:
    admission = Admission(1, hold_s=1.0, clock=Clock())
    first, gone, third = Connection(), Connection(), Connection()
    for connection in (first, gone, third):
        admission.arrived(connection)
    gone.connected = False

    admission.opened(first)

    assert third.reading and not gone.reading
    assert admission.opening == {third}


def test_a_silent_peer_holds_its_place_for_a_while_only() -> None:
    clock = Clock()
    admission = Admission(1, hold_s=1.0, clock=clock)
    silent, waiting = Connection(), Connection()
    admission.arrived(silent)
    admission.arrived(waiting)

    clock.advance(0.9)
    assert not waiting.reading
    clock.advance(0.2)
    assert waiting.reading
    assert silent.reading  # still served, whenever it speaks


def test_idle_once_every_accepted_connection_was_served() -> None:
    admission = Admission(1, hold_s=1.0, clock=Clock())
    assert admission.idle()
    first, second = Connection(), Connection()
    admission.arrived(first)
    admission.arrived(second)

    admission.opened(first)
    assert not admission.idle()  # the second is being served now
    admission.opened(second)
    assert admission.idle()
