"""The dashboard's numbers, from the call records of a time window (`search.calls_with_turns`).

Definitions (the README's console section repeats them):
- containment: of the calls that ended, the share that ended without a transfer to a person;
- task success by intent: of the turns whose dialogue ran a back-end action, the share whose result was
  `ok`, by task (the flow under way, which is named after the intent that started it; else its intent:
  "four five seven…" is an `inform` turn of `track_order`);
- voice-to-voice: caller stops talking → bot starts answering, per turn (`telephony.metrics`), p50 and p95
  per hour;
- out of scope: turns whose intent is the domain's out-of-scope intent (`oos`); low confidence: turns whose
  intent confidence is below `console.low_confidence`. Both listed by how often the same words recur.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from telephony.metrics import voice_to_voice_ms
from voicebot.records.views import CallDetail, TurnView

OOS_INTENTS = frozenset({"oos", "out_of_scope", "nlu_fallback"})
TOP = 10


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _words(text: str) -> str:
    return re.sub(r"[^\w' ]+", "", text.lower()).strip()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "n": len(values)}


def _flow(turn: TurnView) -> str | None:
    flow = turn.extra.get("flow")
    return flow if isinstance(flow, str) and flow else None


def dashboard(
    calls: list[CallDetail], since: datetime, until: datetime, low_confidence: float
) -> dict[str, Any]:
    """Everything the dashboard draws, JSON-ready, hours in UTC."""
    hours: list[datetime] = []
    hour = _hour(since)
    while hour < until:
        hours.append(hour)
        hour += timedelta(hours=1)
    per_hour: Counter[datetime] = Counter(_hour(c.call.started_at) for c in calls)
    v2v: dict[datetime, list[float]] = defaultdict(list)
    confidence: dict[datetime, list[float]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    tasks: dict[str, list[bool]] = defaultdict(list)
    oos: Counter[str] = Counter()
    unsure: Counter[str] = Counter()
    ended = contained = 0
    for detail in calls:
        call = detail.call
        if call.status == "ended":
            ended += 1
            transferred = call.transfer_target is not None or call.transfer_reason is not None
            contained += not transferred
            if transferred:
                # the hand-off's reason code (asked_for_person, frustration…: a few classes), else the
                # transfer's own words (calls recorded before hand-off summaries were)
                reasons[call.handoff_reason or call.transfer_reason or "unknown"] += 1
        task: str | None = None  # the flow under way: a turn that completes it records no flow any more
        for turn in detail.turns:
            at = _hour(turn.created_at)
            total = voice_to_voice_ms(turn.timings_ms)
            if total is not None:
                v2v[at].append(total)
            asr_confidence = turn.extra.get("asr_confidence")
            if isinstance(asr_confidence, int | float):
                confidence[at].append(float(asr_confidence))
            if turn.action and (name := _flow(turn) or task or turn.intent):
                tasks[name].append(turn.action_result == "ok")
            task = _flow(turn) or (None if turn.action else task)
            if turn.transcript:
                if turn.intent in OOS_INTENTS:
                    oos[_words(turn.transcript)] += 1
                elif turn.confidence is not None and turn.confidence < low_confidence:
                    unsure[_words(turn.transcript)] += 1
    all_v2v = [v for values in v2v.values() for v in values]
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "calls": len(calls),
        "ended": ended,
        "containment": round(contained / ended, 4) if ended else None,
        "calls_per_hour": [{"hour": h.isoformat(), "calls": per_hour.get(h, 0)} for h in hours],
        "transfers_by_reason": [{"reason": r, "calls": n} for r, n in reasons.most_common()],
        "task_success": [
            {"intent": k, "turns": len(v), "success": round(sum(v) / len(v), 4)}
            for k, v in sorted(tasks.items())
        ],
        "voice_to_voice": _percentiles(all_v2v),
        "voice_to_voice_per_hour": [{"hour": h.isoformat()} | _percentiles(v2v.get(h, [])) for h in hours],
        "asr_confidence_per_hour": [
            {
                "hour": h.isoformat(),
                "mean": round(float(np.mean(confidence[h])), 3) if confidence.get(h) else None,
            }
            for h in hours
        ],
        "out_of_scope": [{"text": t, "count": n} for t, n in oos.most_common(TOP) if t],
        "low_confidence": [{"text": t, "count": n} for t, n in unsure.most_common(TOP) if t],
    }
