"""The backend interface: allocate once in ``prepare``, then only copy and compute in ``run``."""


class Backend:
    """A backend runs one optimised graph laid out by one memory plan."""

    name = 'abstract'

    def prepare(self, graph, memory_plan) -> None:
        """Allocate every buffer and load every weight; called once per engine."""
        raise NotImplementedError

    def run(self, feeds: dict) -> dict:
        """Run one inference; ``feeds`` are validated by the engine. Returns output copies."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything ``prepare`` acquired."""
