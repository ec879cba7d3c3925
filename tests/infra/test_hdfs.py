"""HDFS: NameNode and DataNodes per node, then the cluster (live DataNodes, write -> read -> delete)."""

from __future__ import annotations

import re
import uuid

import pytest
from fms_tools.fmsops.platform_contract import load as load_platform
from infra_helpers import listening, run

HDFS = "runuser -u hdfs -- /opt/hadoop/bin/hdfs --config /etc/hadoop"
ENV = "HADOOP_ROOT_LOGGER=WARN,console"

# Ports from the platform contract (platform.yml), the ones the roles configure.
PORT = load_platform().port


def _site(host) -> dict[str, str]:
    xml = host.check_output("cat /etc/hadoop/hdfs-site.xml")
    return dict(re.findall(r"<name>([^<]+)</name><value>([^<]*)</value>", xml))


def _namenode(platform):
    return platform.host(platform.first("hdfs_namenode"))


# --------------------------------------------------------------------------- per node


def test_namenode_running(platform, hdfs_namenode_node):
    host = platform.host(hdfs_namenode_node)
    service = host.service("hdfs-namenode")
    assert service.is_running and service.is_enabled
    for port in (PORT("hdfs_namenode_rpc"), PORT("hdfs_namenode_http"), PORT("hdfs_namenode_jmx_exporter")):
        assert listening(host, port), f"port {port}"


def test_namenode_formatted_once(platform, hdfs_namenode_node):
    version = platform.host(hdfs_namenode_node).file("/var/lib/hadoop-hdfs/name/current/VERSION")
    assert version.exists and version.user == "hdfs"
    assert version.contains("^clusterID=CID-fms-")


def test_datanode_running(platform, hdfs_datanode_node):
    host = platform.host(hdfs_datanode_node)
    service = host.service("hdfs-datanode")
    assert service.is_running and service.is_enabled
    for port in (
        PORT("hdfs_datanode_data"),
        PORT("hdfs_datanode_http"),
        PORT("hdfs_datanode_ipc"),
        PORT("hdfs_datanode_jmx_exporter"),
    ):
        assert listening(host, port), f"port {port}"
    data = host.file("/var/lib/hadoop-hdfs/data")
    assert data.user == "hdfs" and data.mode == 0o700


def test_hdfs_config_as_intended(platform, hdfs_datanode_node):
    site = _site(platform.host(hdfs_datanode_node))
    datanodes = len(platform.members("hdfs_datanode"))
    assert site["dfs.permissions.enabled"] == "true"
    assert int(site["dfs.replication"]) == min(3, datanodes)
    assert site["dfs.webhdfs.enabled"] == "false"


# --------------------------------------------------------------------------- cluster


def test_live_datanodes_equal_inventory(platform):
    out = run(_namenode(platform), f"{ENV} {HDFS} dfsadmin -report -live").stdout
    live = re.search(r"Live datanodes \((\d+)\)", out)
    assert live, out[:500]
    assert int(live.group(1)) == len(platform.members("hdfs_datanode"))


def test_safe_mode_off(platform):
    out = run(_namenode(platform), f"{ENV} {HDFS} dfsadmin -safemode get").stdout
    assert "Safe mode is OFF" in out


def test_pipeline_directories(platform):
    out = run(
        _namenode(platform),
        f"{ENV} {HDFS} dfs -ls -d /fms/raw /fms/processed /fms/curated /fms/dlq /fms/checkpoints /spark-logs",
    ).stdout
    listing = {line.split()[-1]: line.split() for line in out.splitlines() if line.startswith("d")}
    for path in ("/fms/raw", "/fms/processed", "/fms/curated", "/fms/dlq", "/fms/checkpoints"):
        assert path in listing, out
        assert listing[path][2] == "spark" and listing[path][3] == "hadoop"
    assert listing["/fms/checkpoints"][0].startswith("drwx------")
    assert listing["/spark-logs"][0] == "drwxrwxrwt"


def test_permissions_are_enforced(platform):
    """Another user name may not write into the pipeline's directories (permissions on)."""
    result = run(
        _namenode(platform),
        f"{ENV} HADOOP_USER_NAME=intruder {HDFS} dfs -touchz /fms/processed/testinfra-{uuid.uuid4().hex[:6]}",
    )
    assert result.rc != 0 and "Permission denied" in (result.stdout + result.stderr)


@pytest.mark.slow
def test_write_read_delete(platform):
    host = _namenode(platform)
    path = f"/tmp/fms-testinfra-{uuid.uuid4().hex}"
    local = f"/tmp/fms-testinfra-{uuid.uuid4().hex}"
    payload = uuid.uuid4().hex * 1000
    host.run(f"printf '%s' {payload} > {local} && chmod 0644 {local}")
    try:
        assert run(host, f"{ENV} {HDFS} dfs -put {local} {path}").rc == 0
        read = run(host, f"{ENV} {HDFS} dfs -cat {path}")
        assert read.rc == 0 and read.stdout == payload
        stat = run(host, f"{ENV} {HDFS} dfs -stat %r {path}").stdout.strip()
        assert int(stat) == min(3, len(platform.members("hdfs_datanode")))
    finally:
        assert run(host, f"{ENV} {HDFS} dfs -rm -skipTrash {path}").rc == 0
        host.run(f"rm -f {local}")
    assert run(host, f"{ENV} {HDFS} dfs -test -e {path}").rc != 0
