"""Hugging Face BLIP checkpoints -> model packages. Entry points: api.export_package, cli (blipd export)."""
