"""Leave the scene as it was when an operation fails or is cancelled."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def rollback_on_error(scene):
    """Remove every node added inside the block if the block raises (including Cancelled)."""
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    except BaseException:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node is not None and node.GetID() not in before and scene.IsNodePresent(node):
                scene.RemoveNode(node)
        raise
