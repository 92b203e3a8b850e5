"""Offline tools around the daemon's own pipeline: `blipd scan` (recorded files at full speed,
through the same sampler, engine, tracking and event code) and `blipd tune` (prompt settings
chosen from labelled examples by replaying the recorded scores through the tracker)."""
