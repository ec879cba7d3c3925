"""Helpers for the lab tests.

The lab tests bring hosts up from the real Terraform stacks (`APPLY = True`:
`fmsops.terraform.apply_env` applies terraform/envs/<env> with lab.tfvars and
lab-minimal.tfvars to the emulator) and check the hosts against what
Terraform reports (`outputs`), never against a layout written down here.

`provision_env` stays for the focused discovery tests (test_lab_preflight.py):
with boto3 it creates a small VPC with tagged instances plus the decoys
discovery must ignore (a stopped instance, another project's instance) that
Terraform never creates.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from fms_tools.fmsops import platform_contract
from fms_tools.fmsops.emulator import EMULATOR_ENV
from fms_tools.lab import discovery, state
from fms_tools.lab.envs import ENVS

REPO = Path(__file__).resolve().parents[2]

# The lab's apply step in the tests: the real stacks.
APPLY = True
PROFILE = "minimal"
# Every inventory group the platform needs (the platform contract's); the minimal profile still has each one.
ALL_GROUPS = set(platform_contract.load().inventory_groups)


def profile_host_count(env: str, profile: str = PROFILE) -> int:
    """Hosts the env's lab-<profile>.tfvars asks for: the sum of its instance groups' counts."""
    tfvars = REPO / "terraform" / "envs" / env / f"lab-{profile}.tfvars"
    return sum(int(n) for n in re.findall(r"\bcount\s*=\s*(\d+)", tfvars.read_text()))


def outputs(env: str = "primary") -> dict[str, Any]:
    """Terraform's outputs of the env's last apply, as the lab recorded them."""
    out = state.load_outputs(env)
    assert out.get("instances"), f"no Terraform outputs recorded for {env} in {state.outputs_file(env)}"
    return out


def prometheus_api(path: str, env: str = "primary") -> dict[str, Any]:
    """GET from the env's Prometheus API (HTTPS with basic auth, as an operator reads it)."""
    from fms_tools.lab import services  # lazily, as the lab's own modules

    monitoring = outputs(env)["inventory_groups"]["monitoring"][0]
    ip = state.load_hosts()[monitoring]["ip"]
    password = (state.lab_dir() / "secrets" / env / "monitoring" / "prometheus-web.password").read_text()
    port = platform_contract.load().port("prometheus")
    request = urllib.request.Request(f"https://{ip}:{port}{path}")
    token = base64.b64encode(f"admin:{password.strip()}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    # HTTPS only; the certificate names the node's address and chains to the env's site CA
    site_ca = ssl.create_default_context(cafile=str(services.site_ca(env)))
    with urllib.request.urlopen(request, timeout=30, context=site_ca) as response:
        return json.load(response)


def playbook_failures(run: Any, limit: int = 40) -> str:
    """The failed/unreachable lines of a lab.converge.PlaybookRun's log (else its tail)."""
    lines = run.log.read_text(errors="replace").splitlines()
    bad = [ln for ln in lines if ln.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in ln]
    return "\n".join(bad[:limit]) or "\n".join(lines[-limit:])


# The lab's ssh config gives up on a connection after 3 s (quick answers for `status`); a test on
# a lab whose load is ten times its cores (site.yml, Spark, the offline suites beside it) waits
# longer for the bastion and the host to shake hands, and tries a failed connection again.
SSH_CONNECT_TIMEOUT_S = 20
SSH_CONNECT_ATTEMPTS = 3
SSH_FAILED = 255  # ssh's own status for a connection that failed (the command never ran)


def host_ssh(name: str, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab host (as root, over the lab's ssh config through the bastion)."""
    from fms_tools.lab import hosts

    ip = state.load_hosts()[name]["ip"]
    for attempt in range(1, SSH_CONNECT_ATTEMPTS + 1):
        res = hosts.ssh_run(ip, command, timeout_s=timeout_s, connect_timeout_s=SSH_CONNECT_TIMEOUT_S)
        if res.returncode != SSH_FAILED or attempt == SSH_CONNECT_ATTEMPTS:
            return res
        time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def must(res: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that has to succeed; else fail with its output."""
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def first_in_group(group: str, env: str = "primary") -> str:
    return outputs(env)["inventory_groups"][group][0]


def security_group_of_host(name: str, env: str = "primary") -> str:
    """The platform contract's security group of a lab host (from its inventory groups)."""
    from fms_tools.fmsops.platform_contract import load

    contract = load()
    groups = {g for g, names in outputs(env)["inventory_groups"].items() if name in names}
    sgs = {contract.security_group_of(g) for g in groups}
    assert len(sgs) == 1, f"{name}: inventory groups {groups} span security groups {sgs}"
    return sgs.pop()


def contract_allows(src: str, dst: str, port: int, env: str = "primary") -> bool:
    """Whether platform.yml opens TCP `port` on host `dst` to host `src` (both of the same env).

    Egress needs no check here: every group may send anything inside its VPC (the security
    module's egress rule); the receiver's ingress decides.
    """
    from fms_tools.fmsops.platform_contract import load

    src_sg, dst_sg = security_group_of_host(src, env), security_group_of_host(dst, env)
    return any(
        r.to == dst_sg and r.source == src_sg and r.protocol == "tcp" and r.from_port <= port <= r.to_port
        for r in load().rules()
    )


def tcp_from(name: str, ip: str, port: int, timeout_s: float = 3) -> str:
    """From lab host `name`, connect to ip:port: "open", "dropped" (no answer: a security group
    dropped it) or "refused" (a RST: nothing listens). bash's /dev/tcp, bounded by `timeout`."""
    cmd = f"timeout {timeout_s:g} bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null; echo rc=$?"
    res = host_ssh(name, cmd, timeout_s=timeout_s + 60)
    assert res.returncode == 0 and "rc=" in res.stdout, f"{name}: {res.stdout}{res.stderr}"
    rc = int(res.stdout.rsplit("rc=", 1)[1].split()[0])
    return {0: "open", 124: "dropped"}.get(rc, "refused")


def subnet_cidrs(out: dict[str, Any]) -> list[str]:
    return sorted(c for tier in out["subnet_cidrs"].values() for c in tier)


def emulator_env(lab_dir: Path, region: str | None = None) -> dict[str, str]:
    """Environment for the aws_ec2 inventory plugin pointed at the lab's emulator (region: primary's)."""
    url = state.load_lab()["emulator"]["url"]
    return {
        **cli_env(lab_dir),
        "AWS_URL": url,
        **EMULATOR_ENV,
        "AWS_DEFAULT_REGION": region or ENVS["primary"].region,
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def venv_tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def cli_env(lab_dir: Path) -> dict[str, str]:
    return {**os.environ, "FMS_LAB_DIR": str(lab_dir)}


def lab_cli() -> list[str]:
    return [sys.executable, "-m", "fms_tools.lab"]


# ---------------------------------------------------------------------------- decoys (boto3)

# What `provision_env` creates per env: subnets (cidr, az suffix) and instances (name, roles, subnet).
LAYOUT = {
    "primary": {
        "subnets": {
            "private-a": ("198.18.1.0/24", "a"),
            "private-b": ("198.18.2.0/24", "b"),
            "data-a": ("198.18.11.0/24", "a"),
            "data-b": ("198.18.12.0/24", "b"),
        },
        "instances": [
            ("fms-lab-kafka-1", "kafka,kafka_controller", "private-a"),
            ("fms-lab-kafka-2", "kafka,kafka_controller", "private-b"),
            ("fms-lab-monitoring-1", "monitoring", "private-a"),
        ],
    },
}


def provision_env(env_name: str, url: str, profile: str = "minimal") -> None:
    """Create the env's VPC, subnets, instances and decoys in the emulator (idempotent)."""
    env = ENVS[env_name]
    ec2 = discovery.ec2_client(env.region, url)
    if ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["fms"]}])["Vpcs"]:
        return
    tags = [{"Key": "Project", "Value": "fms"}, {"Key": "Env", "Value": "lab"}]
    vpc = ec2.create_vpc(CidrBlock=env.cidr, TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])
    vpc_id = vpc["Vpc"]["VpcId"]
    layout = LAYOUT[env_name]
    subnets = {
        name: ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{env.region}{az}")["Subnet"][
            "SubnetId"
        ]
        for name, (cidr, az) in layout["subnets"].items()
    }
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    def run(name: str, roles: str, subnet: str, extra: list[dict] | None = None) -> str:
        itags = [
            {"Key": "Name", "Value": name},
            {"Key": "Role", "Value": roles.split(",")[0]},
            {"Key": "Roles", "Value": roles},
            *(extra if extra is not None else tags),
        ]
        res = ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            SubnetId=subnets[subnet],
            TagSpecifications=[{"ResourceType": "instance", "Tags": itags}],
        )
        return res["Instances"][0]["InstanceId"]

    for name, roles, subnet in layout["instances"]:
        run(name, roles, subnet)
    # Decoys the lab must ignore: a stopped instance and one of another project.
    first = next(iter(layout["subnets"]))
    stopped = run(f"{env_name}-stopped-1", "bastion", first)
    ec2.stop_instances(InstanceIds=[stopped])
    run(f"{env_name}-other-1", "bastion", first, extra=[{"Key": "Project", "Value": "other"}])


def unit_restarts(host: str, unit: str) -> int:
    """How often systemd has restarted the unit on its own (NRestarts: after failures, kills)."""
    return int(must(host_ssh(host, f"systemctl show {unit} -p NRestarts --value")).strip() or 0)


def host_epoch(name: str) -> float:
    """The host's clock (the lab's hosts share the machine's)."""
    return float(must(host_ssh(name, "date +%s.%N")).strip())


def longest_batch_gap(master: str, since: float, until: float) -> tuple[float, float, float]:
    """(length, start, end) of the longest time in [since, until] without a micro-batch ending in
    the stream's journal: where it lies tells a stall from a restart or a competing job."""
    journal = (
        f"journalctl -u fms-stream --since @{int(since)} --until @{int(until) + 1} -o short-unix "
        "--no-pager | grep -E 'batch [0-9]+: in=' || true"
    )
    ends = [float(line.split()[0]) for line in must(host_ssh(master, journal)).splitlines() if line.strip()]
    marks = [since, *(t for t in ends if since <= t <= until), until]
    start, end = max(itertools.pairwise(marks), key=lambda pair: pair[1] - pair[0])
    return end - start, start, end


def unit_runs(host: str, unit: str, since: float, until: float) -> list[str]:
    """When `unit` started and finished in [since, until] (journal lines, unix time first)."""
    journal = (
        f"journalctl -u {unit} --since @{int(since)} --until @{int(until) + 1} -o short-unix --no-pager "
        "| grep -E 'Started|Finished|Deactivated|Failed' || true"
    )
    return [line for line in must(host_ssh(host, journal)).splitlines() if line.strip()]


def last_json(text: str) -> dict:
    """The last JSON object line of a tool's output (fms-spark-job and the checks print one last)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON result line in:\n{text[-3000:]}"
    return json.loads(lines[-1])


def spark_job(master: str, args: str, timeout_s: float = 900) -> tuple[int, str]:
    """`fms-spark-job ARGS` on the Spark master: (exit code, stdout + stderr tail)."""
    started = time.monotonic()
    res = host_ssh(master, f"/usr/local/sbin/fms-spark-job {args} 2>/tmp/fms-spark-job.err", timeout_s)
    err = host_ssh(master, "tail -c 4000 /tmp/fms-spark-job.err").stdout
    print(f"\nfms-spark-job {args}: rc={res.returncode} in {time.monotonic() - started:.0f}s")
    return res.returncode, res.stdout + "\n--- stderr tail ---\n" + err
