"""Language understanding: what callers said (as Whisper wrote it) made into intents and entity values."""
