"""The main job on real input: the platform drives a real Slurm via the agent.

Slurm is the one-node cluster of `.ci/slurm-up` (started here if needed);
without root or slurm-wlm these tests are skipped with that reason.
"""

import threading

import pytest

from tests.slurm import ensure_slurm

pytestmark = [pytest.mark.e2e, pytest.mark.slurm, pytest.mark.timeout(180)]

LAUNCH = """cat > launch.sh <<'EOF'
#!/bin/sh
#SBATCH --job-name=tw-e2e
#SBATCH --output=tw-e2e-%j.out
echo "head job in $PWD"
printf 'line\\twith tab\\n'
EOF
chmod +x launch.sh && echo written"""


@pytest.fixture
def slurm_session(platform, start_agent):
    ensure_slurm()
    start_agent()
    return platform.wait_session(timeout=20)


def agent_run(session, command, timeout=60):
    response = session.wait_response(session.send_command(command), timeout)
    return response.exit_status, response.output.decode()


def poll_state(session, job_id, wanted, timeout=90):
    """Ask squeue through the agent until the job reaches a wanted state."""
    pause = threading.Event()
    seen = []
    for _ in range(int(timeout / 0.5)):
        _, out = agent_run(session, f"squeue -h -t all -j {job_id} -o %T")
        state = out.strip()
        seen.append(state)
        if state in wanted:
            return state
        pause.wait(0.5)
    raise AssertionError(f"job {job_id} never reached {wanted}; seen {seen[-5:]}")


def test_slurm_launch_submit_poll_and_read_output(slurm_session, work_dir):
    assert agent_run(slurm_session, LAUNCH) == (0, "written\n")
    status, out = agent_run(slurm_session, "sbatch --parsable launch.sh")
    assert status == 0, out
    job_id = out.strip().split(";")[0]
    assert job_id.isdigit()
    poll_state(slurm_session, job_id, {"COMPLETED"})
    status, out = agent_run(slurm_session, f"cat tw-e2e-{job_id}.out")
    assert (status, out) == (0, f"head job in {work_dir}\nline\twith tab\n")


def test_slurm_long_job_is_cancelled(slurm_session):
    status, out = agent_run(slurm_session, "sbatch --parsable --wrap 'sleep 300'")
    assert status == 0, out
    job_id = out.strip()
    poll_state(slurm_session, job_id, {"RUNNING"})
    assert agent_run(slurm_session, f"scancel {job_id}")[0] == 0
    poll_state(slurm_session, job_id, {"CANCELLED"})


def test_slurm_failing_submit_reports_its_status(slurm_session):
    status, out = agent_run(slurm_session, "sbatch --partition=nope --wrap true")
    assert status != 0
    assert "partition" in out.lower()
