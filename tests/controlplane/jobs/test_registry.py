"""The job registry: what an entry may say (checked when it is registered), and that the scheduler runs whatever
is registered, functions of the feature packages included."""

import pytest

from controlplane.alerts import delivery, service
from controlplane.choices import JobOutcome
from controlplane.drift import checks
from controlplane.extensions import RegistryError
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.jobs import tasks
from controlplane.rollouts import machine

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
        ({"name": "odd_unit", "every_s": 60, "series": (jobs.Series("n", "N", "furlongs"),)}, "furlongs"),
    ],
)
def test_a_bad_entry_is_refused_when_registered_naming_the_job_and_the_problem(line, problem):
    with pytest.raises(RegistryError, match=problem) as refused:
        jobs.JOBS.register(jobs.Job(func=lambda: None, **line))
    assert repr(line["name"]) in str(refused.value)
    assert line["name"] not in jobs.JOBS


def test_a_name_taken_is_refused():
    with pytest.raises(RegistryError, match="registered already"):
        jobs.JOBS.register(jobs.Job("heartbeat", lambda: None, every_s=60))


def test_a_job_whose_function_is_not_callable_is_refused():
    with pytest.raises(RegistryError, match="not callable"):
        jobs.JOBS.register(jobs.Job("by_path", "controlplane.jobs.tasks:heartbeat", every_s=60))


def test_the_schedule_reads_as_words(settings):
    assert jobs.Job("a", lambda: None, every_s=90).schedule == "every 90 s"
    assert jobs.Job("b", lambda: None, cron="17 3 * * *").schedule == f"cron 17 3 * * * ({settings.TIME_ZONE})"


def test_an_unknown_job_is_a_lookup_error():
    with pytest.raises(LookupError, match="no job called 'ghost'"):
        jobs.get_job("ghost")


def test_the_registered_jobs_call_the_feature_functions_themselves():
    functions = {job.name: job.func for job in jobs.JOBS}
    assert functions["heartbeat"] is tasks.heartbeat
    assert functions["drift_checks"] is checks.run_scheduled_checks
    assert functions["advance_rollouts"] is machine.advance_all
    assert functions["evaluate_alert_rules"] is service.evaluate_alert_rules
    assert functions["deliver_notifications"] is delivery.deliver_pending_notifications


@pytest.mark.django_db
def test_adding_a_job_is_one_entry_and_its_function(monkeypatch, clock):
    add_job(monkeypatch, jobs.Job("count_rows", lambda: {"rows": 3}, every_s=60))
    run = jobruns.execute("count_rows", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.SUCCESS and run.result == {"rows": 3}
