"""A vendor plugin whose import raises a BaseException that is not an Exception."""

raise KeyboardInterrupt("interrupted while probing the NPU driver")
