"""``python -m caseloop_dispatch``: serve dispatch's API."""

from caseloop_dispatch.adapters.migrations import MIGRATIONS
from caseloop_dispatch.app import create_app
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.runtime.serve import serve


def main() -> None:
    settings = DispatchSettings()
    serve(lambda: create_app(settings), settings, MIGRATIONS)


if __name__ == "__main__":
    main()
