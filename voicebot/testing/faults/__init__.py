"""The gateway under faults: misbehaving callers (`callers`), every protocol's line, the carriers' peers
included (`lines`), a back end that hangs or raises (`domain`), a full disk and a frozen database (`env`),
and seeded disconnect plans with the run that measures them (`plans`)."""
