"""One loader per trace format, each returning a :class:`~autoscaler.offline.traces.LoadTrace`.

* :mod:`.azure` - Azure LLM inference 2023 (one request per CSV row);
* :mod:`.alibaba_genai` - Alibaba GenAI 2026 ``lora_request_trace.csv`` (one request per
  row) and ``qps.csv`` (per-container QPS samples): two tables of one dataset, one
  attribution;
* :mod:`.mooncake` - Mooncake FAST'25 JSONL (one request per line);
* :mod:`.servegen` - ServeGen model directories (per-client rates per 600 s window);
* :mod:`.counts` - whitespace-separated requests per second, with NASA-HTTP 1995 put on
  its real timeline;
* :mod:`.simple_csv` - this project's own CSV format, read and written (users' traces and
  the bundled ones).

Which loader a file goes to is decided by :func:`autoscaler.offline.traces.load_trace`
from its first data line (a directory is ServeGen); the modules whose header is matched
whole export it (``AZURE_HEADER``, ``QPS_HEADER``, ``CSV_HEADER``).
"""
