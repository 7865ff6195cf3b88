"""Worker processes: the client, the WorkerPool, the supervisor, and operator actions on workers."""
