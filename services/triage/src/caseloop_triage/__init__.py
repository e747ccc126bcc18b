"""triage — judgment (研判): what an accepted case is, how risky, who handles it, how fast."""
