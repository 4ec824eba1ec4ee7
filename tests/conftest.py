import pytest

from harness import Node


@pytest.fixture
def node():
    n = Node().start()
    yield n
    try:
        if n.proc.poll() is None:
            n.stop()
    finally:
        n.cleanup()
