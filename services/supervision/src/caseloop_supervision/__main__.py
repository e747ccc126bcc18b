"""``python -m caseloop_supervision``: serve supervision's API."""

from caseloop_events.runtime.serve import serve
from caseloop_supervision.adapters.migrations import MIGRATIONS
from caseloop_supervision.app import create_app
from caseloop_supervision.config import SupervisionSettings


def main() -> None:
    settings = SupervisionSettings()
    serve(lambda: create_app(settings), settings, MIGRATIONS)


if __name__ == "__main__":
    main()
