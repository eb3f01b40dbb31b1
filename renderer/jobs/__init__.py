"""Jobs: the SQLite queue with fenced leases, local workers, the child-process runner and Ray
dispatch. Runs renders as `dream` child processes; imports only the foundation."""
