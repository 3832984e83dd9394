"""What a simulated phone line does: `LineConfig` (every default in one place) and the named presets.

A line is given as a preset name (`"mobile-poor"`) or as a mapping of `LineConfig` fields, optionally on top
of a preset (`{preset: gsm, seed: 3}`); `line_config` turns either into a validated `LineConfig` and every
mistake into a `LineError` that names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

Codec = Literal["ulaw", "alaw", "gsm", "amr-nb"]
CODECS: tuple[str, ...] = ("ulaw", "alaw", "gsm", "amr-nb")
Band = Literal["phone", "brickwall", "none"]
Noise = Literal["none", "babble", "street", "office", "white"]
AMR_KBPS = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)  # AMR-NB's eight modes, MR475 … MR122


class LineError(ValueError):
    """A line that cannot be simulated: a bad field, an unknown preset, a codec this machine lacks."""


class LineConfig(BaseModel):
    """One simulated phone line. The defaults are a clean PSTN line into the bot: the telephone band filter
    and G.711 μ-law, nothing else (the benchmarks' `8k-ulaw` condition)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codec: tuple[Codec, ...] = Field(
        ("ulaw",),
        description="codecs in order, each encoded and decoded once: `gsm+ulaw` is a GSM leg into a G.711 "
        "carrier; `none` for none",
    )
    amr_kbps: float = Field(12.2, description="AMR-NB mode (4.75 … 12.2 kbit/s)")
    band: Band = Field("phone", description="channel filter: `phone` 300-3400 Hz, `brickwall`, or `none`")
    loss_pct: float = Field(0.0, ge=0.0, le=50.0, description="20 ms frames lost, in %")
    loss_burst: float = Field(1.0, ge=1.0, le=20.0, description="mean frames per loss burst (1: independent)")
    jitter_ms: float = Field(0.0, ge=0.0, le=500.0, description="mean extra network delay of a frame")
    playout_ms: float = Field(60.0, ge=0.0, le=1000.0, description="jitter buffer: later frames are dropped")
    concealment: Literal["plc", "zero"] = Field("plc", description="lost frames: G.711 App. I PLC or silence")
    noise: Noise = Field("none", description="background noise")
    snr_db: float = Field(20.0, ge=-10.0, le=60.0, description="speech-to-noise ratio in the telephone band")
    clip_dbfs: float | None = Field(None, ge=-40.0, le=0.0, description="hard clipping at this peak level")
    gain_db: float = Field(0.0, ge=-60.0, le=40.0, description="level change of the whole line")
    drift_db: float = Field(0.0, ge=0.0, le=30.0, description="slow wander of the talker's level, ± dB")
    drift_period_s: float = Field(8.0, gt=0.0, le=600.0, description="period of that wander")
    seed: int = Field(0, ge=0, description="noise, loss, jitter and drift all follow it")

    @field_validator("codec", mode="before")
    @classmethod
    def _codec_list(cls, value: Any) -> Any:
        """`gsm+ulaw`, `[gsm, ulaw]`, `ulaw`, `none` or `[]`."""
        if value is None:
            return ()
        if isinstance(value, str):
            return () if value in ("", "none") else tuple(value.split("+"))
        return value

    @field_validator("amr_kbps")
    @classmethod
    def _amr_mode(cls, value: float) -> float:
        if value not in AMR_KBPS:
            raise ValueError(f"AMR-NB has the modes {', '.join(map(str, AMR_KBPS))} kbit/s")
        return value

    def describe(self) -> str:
        """A short human summary: the fields that differ from a bare pass-through."""
        names = [f"amr-nb {self.amr_kbps:g} kbit/s" if c == "amr-nb" else c for c in self.codec]
        parts = ["+".join(names) or "no codec"]
        if self.band != "none":
            parts.append(f"{self.band} band")
        if self.noise != "none":
            parts.append(f"{self.noise} noise at {self.snr_db:g} dB SNR")
        if self.loss_pct:
            burst = f" in bursts of {self.loss_burst:g}" if self.loss_burst > 1 else ""
            parts.append(f"{self.loss_pct:g} % frames lost{burst} ({self.concealment})")
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g} ms over a {self.playout_ms:g} ms buffer")
        if self.gain_db:
            parts.append(f"gain {self.gain_db:+g} dB")
        if self.drift_db:
            parts.append(f"level drift ±{self.drift_db:g} dB")
        if self.clip_dbfs is not None:
            parts.append(f"clipped at {self.clip_dbfs:g} dBFS")
        return ", ".join(parts)


_GSM = {"codec": ("gsm", "ulaw")}  # a mobile leg, then the carrier's G.711 into the bot
PRESET_FIELDS: dict[str, dict[str, Any]] = {
    "mulaw": {"codec": ("ulaw",), "band": "none"},
    "clean-g711": {},
    "clean-alaw": {"codec": ("alaw",)},
    "hard-g711": {"band": "brickwall"},
    "gsm": _GSM,
    "amr-nb": {"codec": ("amr-nb", "ulaw")},
    "gsm-loss3": {**_GSM, "loss_pct": 3.0},
    "voip-jitter": {"loss_pct": 1.0, "jitter_ms": 20.0},
    "office-20db": {"noise": "office", "snr_db": 20.0},
    "babble-20db": {"noise": "babble", "snr_db": 20.0},
    "babble-10db": {"noise": "babble", "snr_db": 10.0},
    "street-10db": {**_GSM, "noise": "street", "snr_db": 10.0},
    "quiet-line": {"gain_db": -20.0},
    "loud-clipped": {"gain_db": 10.0, "clip_dbfs": -3.0},
    "mobile-poor": {**_GSM, "loss_pct": 3.0, "noise": "babble", "snr_db": 10.0},
}
PRESETS: dict[str, LineConfig] = {name: LineConfig(**fields) for name, fields in PRESET_FIELDS.items()}


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "line"
    return f"{field}: {first['msg']}"


def preset(name: str) -> LineConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise LineError(f"unknown line preset {name!r}; presets: {', '.join(PRESETS)}") from None


def line_config(value: str | Mapping[str, Any] | LineConfig) -> LineConfig:
    """A preset name, a mapping of fields (on top of `preset: NAME` when it has one), or a LineConfig."""
    if isinstance(value, LineConfig):
        return value
    if isinstance(value, str):
        return preset(value)
    if not isinstance(value, Mapping):
        raise LineError(f"a line is a preset name or a mapping of its fields, not {type(value).__name__}")
    try:
        return LineConfig.model_validate(_on_preset(value))
    except ValidationError as exc:
        raise LineError(_problem(exc)) from exc


def _on_preset(fields: Mapping[str, Any]) -> dict[str, Any]:
    rest = dict(fields)
    if "preset" not in rest:
        return rest
    return {**preset(str(rest.pop("preset"))).model_dump(exclude_unset=True), **rest}


def _as_line(value: Any) -> Any:
    """For pydantic models that hold a line (conversation tests): a preset name or `preset:` mapping is
    resolved here, so that a bad field is still reported at its own place (`line.snr_db`)."""
    try:
        if isinstance(value, str):
            return preset(value)
        return _on_preset(value) if isinstance(value, Mapping) else value
    except LineError as exc:
        raise PydanticCustomError("line", "{problem}", {"problem": str(exc)}) from None


LineField = Annotated[LineConfig, BeforeValidator(_as_line)]
"""A `LineConfig` field of another model that also takes a preset name or `{preset: NAME, …}`."""
