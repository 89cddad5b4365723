"""The launch file's lifecycle actions against the real node (own process, real DDS): its
configure event, then its event handlers dispatched as launch dispatches them (on every
matching transition_event, unless handle_once), then the README's recipe (deactivate,
cleanup, set, configure), which must leave the node inactive."""
import pytest

import fakelaunch
from lifecycle_msgs.msg import TransitionEvent
from rospeer import T, Peer, free_domain_id, start_node, stop_node

DOMAIN = free_domain_id()


class Dispatcher:
    """launch's dispatch of OnStateTransition handlers over the node's transition events:
    the transitions their entities would emit are queued in ``pending``."""

    def __init__(self, peer, actions):
        self.handlers = [r.args[0] for r in fakelaunch.of_type(actions, 'RegisterEventHandler')]
        self.pending = []
        self.topic = f'/{peer.target}/transition_event'
        peer.node.create_subscription(TransitionEvent, self.topic, self._on_event, 10)

    def _on_event(self, msg):
        for handler in list(self.handlers):
            if (handler.kwargs['start_state'], handler.kwargs['goal_state']) == \
                    (msg.start_state.label, msg.goal_state.label):
                self.pending += [e.kwargs['event'].kwargs['transition_id']
                                 for e in handler.kwargs['entities']]
                if handler.kwargs.get('handle_once'):
                    self.handlers.remove(handler)


@pytest.fixture
def peer(tmp_path, monkeypatch):
    actions = fakelaunch.run(fakelaunch.load(monkeypatch))
    proc = start_node(DOMAIN, tmp_path, args=['-p', 'backend:=cpu'])
    p = Peer(DOMAIN, tmp_path)
    p.ready()
    p.dispatcher = Dispatcher(p, actions)
    p.launch_events = [e.kwargs['event'].kwargs['transition_id']
                       for e in fakelaunch.of_type(actions, 'EmitEvent')]
    assert p.wait_for(lambda: p.node.count_publishers(p.dispatcher.topic) > 0, timeout=10)
    yield p
    p.close()
    assert stop_node(proc) == 0, (tmp_path / 'det.log').read_text()[-3000:]


def settle(peer, seconds=2.0):
    """Apply the transitions the handlers emit until none comes within ``seconds``."""
    while peer.wait_for(lambda: peer.dispatcher.pending, timeout=seconds):
        assert peer.change_state(peer.dispatcher.pending.pop(0))


def test_launch_activates_once_and_the_readme_recipe_ends_inactive(peer):
    assert peer.launch_events == [T.TRANSITION_CONFIGURE]
    assert peer.change_state(T.TRANSITION_CONFIGURE)
    settle(peer)
    assert peer.state() == 'active'
    # The README's recipe to change a rebuild parameter.
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    assert peer.change_state(T.TRANSITION_CLEANUP)
    assert peer.set_params(input_size=320)[0].successful
    assert peer.change_state(T.TRANSITION_CONFIGURE)
    settle(peer)
    assert peer.state() == 'inactive'
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    assert peer.state() == 'active'
