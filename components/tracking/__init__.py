from components.tracking.component import close_run, log_stages, open_run, resolve_params

__all__ = ["resolve_params", "open_run", "log_stages", "close_run"]
