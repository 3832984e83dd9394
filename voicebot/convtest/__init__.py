"""End-to-end conversation tests: scripted calls in YAML, played through the real pipeline, judged by step."""
