"""Background work: RQ jobs, the enqueue helper, the outbox relay and sweeper."""
