"""Dialogue: turning understood caller turns into business actions and spoken replies."""
