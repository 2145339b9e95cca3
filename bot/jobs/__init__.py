"""The life of a job, free of Discord: runner, slot queue, status throttle, upstream health."""
