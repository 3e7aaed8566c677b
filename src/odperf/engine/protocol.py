"""The parent <-> worker channel: newline-delimited JSON over a pair of dedicated pipes.

The worker's stdout and stderr belong to TensorFlow (its logging, oneDNN banners, CUDA warnings); the
protocol never touches them, so nothing TensorFlow prints can corrupt a message. The worker gets the two
pipe ends as extra file descriptors (``pass_fds``); a board's worker gets them as its SSH session's
stdin/stdout and moves its own stdout onto stderr. The channel lives in the portable worker core
(``engine.portable``), which the board runs without the rest of odperf.
"""

from odperf.engine.portable import Channel, ChannelClosed, ChannelTimeout

__all__ = ["Channel", "ChannelClosed", "ChannelTimeout"]
