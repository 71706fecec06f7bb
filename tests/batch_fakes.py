"""Stand-in networks for batch tests, importable by dask worker processes (a test
module's monkeypatching does not reach another process): a random parent network
seeded the same in every process and the disk-around-each-click predictor."""
from __future__ import annotations


def fake_networks():
    import torch

    from napari_vidseg.models.vidsegnet import VidSegNet
    from test_segment_cli import DiskPredictor

    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval(), DiskPredictor()


def slow_networks():
    """fake_networks whose predictor sleeps a little on every click: a video that lasts
    long enough for a test to kill its worker mid-run."""
    import time

    parent, predictor = fake_networks()
    predict = predictor.predict

    def slow(*a, **k):
        time.sleep(0.5)
        return predict(*a, **k)

    predictor.predict = slow
    return parent, predictor
