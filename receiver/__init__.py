"""receiver: turns a Segment event stream into signals on leads."""
