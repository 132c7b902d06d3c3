"""Fake GPUs for every Python process of a test Ray node.

A node started with this directory (and the repository) on ``PYTHONPATH`` and
``GREENTUNE_FAKE_NVML_STATE`` set sees :func:`tests.fakes.fake_pynvml.node_fleet` as
``pynvml``: its workers, trials and Ray tasks all meter and limit the same fake GPUs,
whose power limits live in that directory like a real driver's device state.
"""

import os
import sys

if os.environ.get("GREENTUNE_FAKE_NVML_STATE"):
    from tests.fakes.fake_pynvml import node_fleet

    sys.modules["pynvml"] = node_fleet(os.environ["GREENTUNE_FAKE_NVML_STATE"])
