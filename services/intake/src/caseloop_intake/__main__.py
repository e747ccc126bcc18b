"""``python -m caseloop_intake``: serve intake's API."""

from caseloop_events.runtime.serve import serve
from caseloop_intake.adapters.migrations import MIGRATIONS
from caseloop_intake.app import create_app
from caseloop_intake.config import IntakeSettings


def main() -> None:
    settings = IntakeSettings()
    serve(lambda: create_app(settings), settings, MIGRATIONS)


if __name__ == "__main__":
    main()
