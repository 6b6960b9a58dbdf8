"""Reads a TensorBoard log folder with TensorBoard's own reader (EventAccumulator, the loader behind
`tensorboard --logdir`), the independent reference for the event files grpo::io::TensorBoardWriter
writes. A helper module for the tests, not a test file.

    read_scalars(logdir) -> {tag: [(step, value), ...]}   in the order TensorBoard loads them
    read_texts(logdir)   -> {tag: [(step, markdown), ...]}
"""
import pathlib

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def _load(logdir):
    path = pathlib.Path(logdir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such TensorBoard log folder")
    # size_guidance 0 = keep every event (the default samples down to 1,000 scalars per tag).
    accumulator = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def read_scalars(logdir):
    """Every scalar series: tag -> [(step, value)], values as TensorBoard holds them (float32)."""
    accumulator = _load(logdir)
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()[event_accumulator.SCALARS]}


def read_texts(logdir):
    """Every text-plugin series: tag -> [(step, markdown)], the string decoded as UTF-8."""
    accumulator = _load(logdir)
    texts = {}
    for tag in accumulator.PluginTagToContent("text"):
        rows = []
        for event in accumulator.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.shape != ():
                raise ValueError(f"{logdir}: text summary {tag!r} at step {event.step} has shape "
                                 f"{value.shape}, expected a scalar string")
            rows.append((event.step, value.item().decode("utf-8")))
        texts[tag] = rows
    return texts
