"""The gateway under faults: misbehaving callers (`callers`), a back end that hangs or raises (`domain`),
a full disk and a frozen database (`env`), and seeded disconnect plans with the run that measures them
(`plans`)."""
