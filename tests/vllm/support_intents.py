"""The support-intents task the serving tests serve: its labels, prompt and committed v1 adapter."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
V1_ADAPTER = ROOT / "examples" / "support-intents" / "data" / "v1"
GOLD = ROOT / "examples" / "support-intents" / "data" / "gold_heldout.jsonl"
LABELS = json.loads((ROOT / "examples" / "data" / "clinc150_banking.json").read_text())["labels"]
TASK = "support-intents"
SYSTEM = "Classify the banking request. Reply with the intent label only."
