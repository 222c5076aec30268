"""Recording: call audio captured through the call-control seam and written off the loop."""

from recorder.capture import Capture

__all__ = ["Capture"]
