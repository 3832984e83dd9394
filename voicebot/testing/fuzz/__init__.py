"""Fuzzing the gateway's inbound parsers: Hypothesis strategies for hostile calls (`cases`), the driver that
plays them against the live gateway and judges each close (`driver`), and a whole campaign (`campaign`)."""
