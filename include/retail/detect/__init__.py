"""Detect uploads under incoming/: the setting that chooses how (``trigger``), the S3 sensor (``sensor``), S3's
event messages and their SQS watcher (``events``), which keys a run takes (``incoming``), and the detection tasks
(``tasks``)."""
