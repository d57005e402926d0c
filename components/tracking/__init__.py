from components.tracking.component import close_run, open_run

__all__ = ["open_run", "close_run"]
