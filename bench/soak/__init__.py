"""The fault soak: every guarantee checked at once on what consumers received, under a seeded random
schedule of faults (issue 43; docs/reliability.md, "The fault soak")."""
