"""supervision — supervision (督办) and feedback (反馈): keeps every event of every case,
verifies results, takes the citizen's evaluation, closes cases, answers timelines."""
