"""The test harness, importable: what tests/ and scripts/ share to drive a real gateway from outside.

- `speech`: caller phrases from the real TTS, silence, the rates.
- `fakes`: stand-ins for every model (VAD, ASR, TTS, NLU) with the real interfaces: the fast tier.
- `stages`: one pipeline stage run on its own, frames in and out in both directions.
- `gateway`: the gateway app on loopback in this process, a recording observer, plain HTTP and `/ws` reads.
- `twilio`: Twilio's side of a Media Streams WebSocket (the one client for tests, benchmarks and soak).
- `carriers`: the other carriers' sides (Telnyx, Plivo, Exotel, Vonage, jambonz, FreeSWITCH, Genesys), each
  written from its reference, as `faults.Caller`s; and the fake-model gateway their tests run on.
- `pg`: a throwaway PostgreSQL cluster (and its pytest fixture).
- `records`: sample calls and raw-row checks for the call-record tests.
- `faults`: callers that misbehave on purpose (`faults.lines`: every protocol's, the carriers' included),
  a failing back end, a full disk, fault plans and the run that measures crashes, leaks and lost records
  (tests/test_faults.py, scripts/faults_gateway.py).
- `fuzz`: Hypothesis strategies for hostile input (`fuzz.carriers`: the carriers'), the driver that
  plays them against the live gateway and the campaign around it (tests/test_fuzz.py,
  scripts/fuzz_gateway.py).

It needs the development dependencies (pytest, Hypothesis, psutil): nothing outside this package imports it.
"""
