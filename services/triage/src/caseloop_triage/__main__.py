"""``python -m caseloop_triage``: serve triage's API."""

from caseloop_events.runtime.serve import serve
from caseloop_triage.adapters.migrations import MIGRATIONS
from caseloop_triage.app import create_app
from caseloop_triage.config import TriageSettings


def main() -> None:
    settings = TriageSettings()
    serve(lambda: create_app(settings), settings, MIGRATIONS)


if __name__ == "__main__":
    main()
