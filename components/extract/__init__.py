from components.extract.component import extract_shards, extract_workers, finalize_extract

__all__ = ["extract_workers", "extract_shards", "finalize_extract"]
