"""Development tools: `rthub demo`, its simulated LMS, a private redis-server and a one-run token."""
