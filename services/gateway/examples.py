"""Example bodies shown in the OpenAPI document (a unit test checks each against its model)."""

from __future__ import annotations

from typing import Any

EXECUTION_ID = "0b8f2c64-5d0e-4c1f-9a3e-1f2d3c4b5a69"
JOB_ID = "7c2e9a10-3b4d-4f6a-8e1c-2d3b4a5c6e7f"
DOCUMENT_ID = "3f9d8c7b-6a5e-4d3c-2b1a-0f9e8d7c6b5a"

JOB_DEFINITION: dict[str, Any] = {
    "id": "python-docs",
    "name": "Python documentation",
    "type": "crawler",
    "description": "Keep the Python tutorial fresh",
    "sources": [],
    "steps": [
        {
            "name": "crawl",
            "action": "crawl",
            "config": {"start_urls": ["https://docs.python.org/3/tutorial/"], "max_depth": 2, "max_pages": 200},
            "on_error": "retry",
        }
    ],
    "schedule": "0 3 * * *",
    "timeout": "30m",
    "enabled": True,
    "auto_start": False,
    "config": {},
    "post_jobs": ["maintenance-reindex"],
    "post_jobs_when": "changed",
    "webhooks": [
        {
            "url": "https://hooks.example.com/quaero",
            "events": ["execution.completed", "documents.changed"],
            "secret": "",
            "has_secret": True,
        }
    ],
    "created_at": "2025-01-10T09:00:00.000Z",
    "updated_at": "2025-01-10T09:00:00.000Z",
}

SOURCE: dict[str, Any] = {
    "id": "python-docs",
    "name": "Python docs",
    "type": "web",
    "base_url": "https://docs.python.org/3/",
    "enabled": True,
    "crawl": {
        "max_depth": 3,
        "max_pages": 500,
        "include_patterns": [],
        "exclude_patterns": [],
        "allowed_domains": [],
        "allow_subdomains": None,
        "follow_links": None,
        "concurrency": None,
        "rate_limit": 200,
        "obey_robots": None,
        "sitemap": None,
        "render": "auto",
        "wait_for": None,
    },
    "filters": {"include_patterns": ["/3/"], "exclude_patterns": ["/whatsnew/"]},
    "has_auth": True,
    "created_at": "2025-01-10T09:00:00.000Z",
    "updated_at": "2025-01-10T09:00:00.000Z",
}

EXECUTION_STARTED: dict[str, Any] = {
    "execution_id": EXECUTION_ID,
    "job_definition_id": "python-docs",
    "job_name": "Python documentation",
    "status": "running",
    "message": "Job execution started",
}

EXECUTION: dict[str, Any] = {
    "id": EXECUTION_ID,
    "job_definition_id": "python-docs",
    "job_name": "Python documentation",
    "status": "completed",
    "trigger": "api",
    "parent_execution_id": None,
    "lineage": [],
    "steps": [
        {
            "index": 0,
            "name": "crawl",
            "action": "crawl",
            "status": "completed",
            "attempts": 1,
            "crawl_job_ids": [JOB_ID],
            "error": "",
        }
    ],
    "post_jobs": {
        "state": "done",
        "triggered": [
            {"job_definition_id": "maintenance-reindex", "execution_id": "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c"}
        ],
        "skipped": [{"job_definition_id": "old-report", "reason": "disabled", "detail": ""}],
    },
    "error": None,
    "created_at": "2025-01-10T09:00:00.000Z",
    "started_at": "2025-01-10T09:00:00.020Z",
    "completed_at": "2025-01-10T09:01:12.400Z",
    "changes": {"new": 3, "changed": 2, "unchanged": 35, "removed": 1},
    "parent_changes": None,
}

WEBHOOK_DELIVERY: dict[str, Any] = {
    "id": "msg_4c1f9a3e1f2d3c4b5a690b8f2c645d0e",
    "execution_id": EXECUTION_ID,
    "url": "https://hooks.example.com/quaero",
    "event": "execution.completed",
    "status": "pending",
    "attempts": 2,
    "last_status_code": 500,
    "last_error": "HTTP 500: Internal Server Error",
    "next_attempt_at": "2025-01-10T09:01:32.400Z",
    "created_at": "2025-01-10T09:01:12.400Z",
    "delivered_at": None,
}

CRAWL_JOB: dict[str, Any] = {
    "id": JOB_ID,
    "name": "crawl: https://docs.python.org/3/tutorial/",
    "source_id": "adhoc:python-docs",
    "source_type": "web",
    "status": "running",
    "config": {
        "max_depth": 2,
        "max_pages": 200,
        "include_patterns": [],
        "exclude_patterns": [],
        "allowed_domains": [],
        "allow_subdomains": False,
        "follow_links": True,
        "concurrency": 16,
        "rate_limit": 0,
        "obey_robots": True,
        "sitemap": "include",
        "render": "auto",
        "wait_for": "",
    },
    "seed_urls": ["https://docs.python.org/3/tutorial/"],
    "progress": {
        "total_urls": 40,
        "completed_urls": 30,
        "failed_urls": 1,
        "pending_urls": 10,
        "skipped_urls": 12,
        "percentage": 75.0,
    },
    "metadata": {
        "job_definition_id": "python-docs",
        "execution_id": EXECUTION_ID,
        "step": 0,
        "attempt": 1,
        "rerun_of": "",
    },
    "result_count": 29,
    "failed_count": 1,
    "error": "",
    "created_at": "2025-01-10T09:00:00.050Z",
    "started_at": "2025-01-10T09:00:00.050Z",
    "completed_at": None,
    "changes": {"new": 2, "changed": 3, "unchanged": 24, "removed": 0},
}

JOB_STATS: dict[str, Any] = {"total": 12, "pending": 0, "running": 1, "completed": 9, "failed": 1, "cancelled": 1}

RERUN: dict[str, Any] = {"original_job_id": JOB_ID, "new_job_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}

JOB_LOG: dict[str, Any] = {
    "timestamp": "2025-01-10T09:00:03.120Z",
    "level": "warn",
    "message": "https://docs.python.org/3/old.html answered 404",
}

CRAWL_URL: dict[str, Any] = {
    "id": 17,
    "url": "https://docs.python.org/3/download.html",
    "depth": 3,
    "state": "skipped",
    "reason": "depth",
    "http_status": 0,
    "redirected_to": "",
    "document_id": "",
    "attempts": 0,
    "discovered_from": "https://docs.python.org/3/tutorial/index.html",
    "change": None,
}

_METADATA = {
    "description": "An informal introduction to Python",
    "language": "en",
    "status_code": 200,
    "depth": 1,
    "fetched_at": "2025-01-10T09:00:02.000Z",
    "content_hash": "5d41402abc4b2a76b9719d911017c592",
}

DOCUMENT_SUMMARY: dict[str, Any] = {
    "id": DOCUMENT_ID,
    "source_id": "adhoc:python-docs",
    "job_id": JOB_ID,
    "url": "https://docs.python.org/3/tutorial/introduction.html",
    "title": "An Informal Introduction to Python",
    "metadata": _METADATA,
    "snippet": "… Python's **lists** can be indexed and sliced …",
    "created_at": "2025-01-10T09:00:02.000Z",
    "updated_at": "2025-01-10T09:00:02.000Z",
    "etag": '"5d41402a"',
    "last_modified": "Fri, 10 Jan 2025 08:55:00 GMT",
    "removed_at": None,
    "version": 2,
    "heading_path": ["An Informal Introduction to Python", "Lists"],
}

DOCUMENT: dict[str, Any] = {
    **{k: v for k, v in DOCUMENT_SUMMARY.items() if k not in ("snippet", "heading_path")},
    "markdown": "# An Informal Introduction to Python\n\nIn the following examples, input and output …",
}


DOCUMENT_CHUNK: dict[str, Any] = {
    "id": "9b1f0c2d4e6a8b0c1d2e3f40",
    "heading_path": ["An Informal Introduction to Python", "Using Python as a Calculator", "Lists"],
    "text": "### Lists\n\nPython knows a number of compound data types, used to group together other values. …",
    "tokens": 24,
}

LLMS_TXT = """# Python docs

> 3 documents crawled from docs.python.org.

## Pages

- [Python 3 documentation](https://docs.python.org/3/): The official Python documentation.

## Tutorial

- [The Python Tutorial](https://docs.python.org/3/tutorial/index.html)
- [An Informal Introduction to Python](https://docs.python.org/3/tutorial/introduction.html)
"""

LLMS_FULL_TXT = """# Python docs

> 3 documents crawled from docs.python.org.

# Python 3 documentation

Source: https://docs.python.org/3/

Welcome! This is the official documentation for Python 3. …
"""


def page(plural: str, item: dict[str, Any]) -> dict[str, Any]:
    """A one-item list body."""
    return {plural: [item], "total_count": 1, "limit": 50, "offset": 0}


def ok(example: dict[str, Any], description: str = "Success") -> dict[str, Any]:
    """A `responses` entry showing `example` as the JSON body."""
    return {"description": description, "content": {"application/json": {"example": example}}}


DOCUMENT_CHANGE: dict[str, Any] = {
    "url": "https://docs.python.org/3/tutorial/introduction.html",
    "document_id": DOCUMENT_ID,
    "change": "changed",
    "content_hash": "5d41402abc4b2a76b9719d911017c592",
    "previous_hash": "7d793037a0760186574b0282f2f435e7",
}

DOCUMENT_VERSION: dict[str, Any] = {
    "version": 2,
    "content_hash": "5d41402abc4b2a76b9719d911017c592",
    "fetched_at": "2025-01-11T03:00:04.000Z",
    "title": "An Informal Introduction to Python",
}

DOCUMENT_VERSION_FULL: dict[str, Any] = {
    **DOCUMENT_VERSION,
    "markdown": "# An Informal Introduction to Python\n\nIn the following examples, input and output …",
}

DOCUMENT_DIFF: dict[str, Any] = {
    "from_version": 1,
    "to_version": 2,
    "diff": "--- version 1\n+++ version 2\n@@ -1,3 +1,3 @@\n # An Informal Introduction to Python\n \n"
    "-In the examples below, input and output …\n+In the following examples, input and output …\n",
}

DOCUMENT_HTML: dict[str, Any] = {
    "html": "<h1>An Informal Introduction to Python</h1>\n<p>In the following examples, input and output …</p>\n",
}
