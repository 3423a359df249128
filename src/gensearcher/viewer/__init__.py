"""`gensearcher view`: a local web app over run folders, and the same pages as a static site.

    runs.py          every read of a run folder, behind one SQLite index (RunIndex)
    trajectories.py  trajectory files as rounds (read_trajectory, rounds)
    files.py         which files may be served (FileRoots), thumbnails
    pages.py         the pages (Jinja2 templates in templates/, one script in static/)
    app.py           the FastAPI app (build_app): pages, Live JSON, files, optional token
    export.py        the static site (export_site, export_runs); the `eval` report is this export
"""

from gensearcher.viewer.runs import RunIndex, RunInfo

__all__ = ["RunIndex", "RunInfo"]
