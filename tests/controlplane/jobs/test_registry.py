"""The job table: what a line may say, and how a job named by its import path is found."""

import pytest

from controlplane.choices import JobOutcome
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns

from .conftest import add_job


@pytest.mark.parametrize(
    "line, problem",
    [
        ({"name": "Bad-Name", "every_s": 60}, "lower-case"),
        ({"name": "both", "every_s": 60, "cron": "* * * * *"}, "not both"),
        ({"name": "neither"}, "not both or neither"),
        ({"name": "never", "every_s": 0}, "positive"),
        ({"name": "endless", "every_s": 60, "max_runtime_s": 0}, "positive"),
        ({"name": "badcron", "cron": "every day at noon"}, "Wrong number of fields"),
    ],
)
def test_a_bad_line_fails_at_import_naming_the_problem(line, problem):
    with pytest.raises(ValueError, match=problem):
        jobs.Job(func=lambda: None, **line)


def test_the_schedule_reads_as_words(settings):
    assert jobs.Job("a", lambda: None, every_s=90).schedule == "every 90 s"
    assert jobs.Job("b", lambda: None, cron="17 3 * * *").schedule == f"cron 17 3 * * * ({settings.TIME_ZONE})"


def test_an_unknown_job_is_a_lookup_error():
    with pytest.raises(LookupError, match="no job called 'ghost'"):
        jobs.get_job("ghost")


@pytest.mark.django_db
def test_a_job_named_by_its_import_path_is_imported_when_it_runs(monkeypatch, clock):
    add_job(monkeypatch, jobs.Job("by_path", "controlplane.jobs.registry:heartbeat", every_s=60))
    run = jobruns.execute("by_path", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.SUCCESS and run.result == {"recorded": False}
