"""The fault suite: servers of its own killed, paused and restarted under real writers."""
