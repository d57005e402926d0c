"""Running great-expectations: an ephemeral context, suites over whole dataframes, Data Docs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from latentanon.errors import DataError

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

# Offending rows listed per failed check in messages and reports (the full count is always given).
LISTED_ROWS = 10
DATA_DOCS_SITE = "validate"


@dataclass
class CheckOutcome:
    """One expectation's result on one set, in the form reports and messages need."""

    set_name: str
    check: str
    expectation: str
    success: bool
    observed: object = None
    unexpected_count: int = 0
    unexpected_rows: list[str] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "expectation": self.expectation,
            "success": self.success,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "unexpected_rows": self.unexpected_rows,
            **({"error": self.error} if self.error else {}),
        }

    def describe(self) -> str:
        if self.error:
            detail = f"could not be evaluated: {self.error}"
        elif self.unexpected_rows:
            more = self.unexpected_count - len(self.unexpected_rows)
            rows = ", ".join(self.unexpected_rows) + (f" (+{more} more)" if more > 0 else "")
            detail = f"{self.unexpected_count} offending rows: {rows}"
        else:
            detail = f"observed {json.dumps(self.observed, default=str)}"
        return f"set '{self.set_name}', check '{self.check}' ({self.expectation}): {detail}"


def _ephemeral_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_data_docs(context, directory: Path) -> Path:
    """Write great-expectations' Data Docs of every validation run in ``context`` into
    ``directory`` (replacing an older report there); returns its index.html."""
    import shutil

    # absolute: great-expectations refuses a relative site folder in an ephemeral context, and the
    # main job's workdir is "."
    given = Path(directory)
    directory = given.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    context.add_data_docs_site(
        site_name=DATA_DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    if not (directory / "index.html").is_file():
        raise DataError(f"{given}: great-expectations wrote no Data Docs index")
    return given / "index.html"


def _rows_of(result: dict) -> list[str]:
    rows = []
    for item in result.get("unexpected_index_list") or []:
        rows.append(str(item.get("video_id", item)) if isinstance(item, dict) else str(item))
    return rows[:LISTED_ROWS]


def _outcome(set_name: str, check: str, result) -> CheckOutcome:
    payload = result.to_json_dict()
    body = payload.get("result") or {}
    info = payload.get("exception_info") or {}
    error = (info.get("exception_message") or "unknown error") if info.get("raised_exception") else ""
    observed = body.get("observed_value")
    if observed is None and "element_count" in body:
        observed = {k: body[k] for k in ("element_count", "unexpected_count", "missing_count") if k in body}
    if isinstance(body.get("details"), dict) and "mismatched" in body["details"]:
        observed = {"columns": body.get("observed_value"), "mismatched": body["details"]["mismatched"]}
    return CheckOutcome(
        set_name=set_name,
        check=check,
        expectation=payload["expectation_config"]["type"],
        success=bool(payload["success"]),
        observed=observed,
        unexpected_count=int(body.get("unexpected_count") or 0),
        unexpected_rows=_rows_of(body),
        error=str(error),
    )


def run_suite(
    context, suite_name: str, df: pd.DataFrame, checks: list[tuple[str, str, Expectation]]
) -> list[CheckOutcome]:
    """Validate ``df`` (the whole dataframe as one batch) against (set, check name, expectation)
    triples; one outcome per triple, in order."""
    import great_expectations as gx

    asset = context.data_sources.add_pandas(f"{suite_name}-source").add_dataframe_asset(f"{suite_name}-manifest")
    batch = asset.add_batch_definition_whole_dataframe(f"{suite_name}-all-rows")
    for set_name, check, expectation in checks:
        expectation.meta = {"set": set_name, "check": check}
    # One add with every expectation: adding them one by one re-serialises the suite each time.
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=[e for _, _, e in checks]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    index_columns = ["video_id"] if "video_id" in df.columns else []
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )
    by_key = {(r.expectation_config.meta["set"], r.expectation_config.meta["check"]): r for r in result.results}
    return [_outcome(set_name, check, by_key[(set_name, check)]) for set_name, check, _ in checks]
