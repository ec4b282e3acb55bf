"""Tables, curves and exports over the runs of one or more sweeps (`python -m softqmix.results`)."""

from softqmix.results.report import ResultsReport, summarise
from softqmix.results.runs import RunRecord, RunStatus, load_runs

__all__ = ["ResultsReport", "RunRecord", "RunStatus", "load_runs", "summarise"]
