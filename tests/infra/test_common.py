"""Every node: OS baseline from roles/common and roles/java."""

from __future__ import annotations

import pytest

JVM_GROUPS = {"kafka", "kafka_controller", "hdfs_namenode", "hdfs_datanode", "spark_master", "spark_worker"}


def _groups_of(platform, name: str) -> set[str]:
    return {g for g, members in platform.groups.items() if name in members}


def test_every_inventory_host_resolves_to_its_address(platform, any_node):
    host = platform.host(any_node)
    for values in platform.vars.values():
        address, name = values.get("fms_node_address"), values.get("fms_node_name")
        if not (address and name) or not str(address)[0].isdigit():
            continue
        resolved = host.check_output(f"getent ahostsv4 {name} | awk 'NR==1 {{print $1}}'")
        assert resolved == str(address), (
            f"{any_node}: {name} resolves to {resolved!r}, inventory says {address}"
        )


def test_hostname_is_not_mapped_to_loopback(platform, any_node):
    host = platform.host(any_node)
    assert not host.file("/etc/hosts").contains(r"^127\.0\.1\.1"), (
        "Hadoop/Kafka would bind the loopback alias"
    )


def test_site_ca_is_trusted(platform, any_node):
    host = platform.host(any_node)
    ca = host.file("/etc/fms/pki/ca.crt")
    assert ca.exists and ca.mode == 0o644
    assert ca.contains("BEGIN CERTIFICATE")
    assert host.run("ls /etc/ssl/certs | grep -q '^fms-.*-ca.pem$'").rc == 0


def test_service_users_match_the_roles(platform, any_node):
    host = platform.host(any_node)
    groups = _groups_of(platform, any_node)
    wanted = {
        "kafka": {"kafka", "kafka_controller"},
        "hdfs": {"hdfs_namenode", "hdfs_datanode"},
        "spark": {"spark_master", "spark_worker"},
    }
    for user, roles in wanted.items():
        if groups & roles:
            account = host.user(user)
            assert account.exists, f"{any_node} should have the {user} user"
            assert account.shell == "/usr/sbin/nologin"
            assert "hadoop" in account.groups


def test_time_sync(platform, any_node):
    host = platform.host(any_node)
    container = host.run("systemd-detect-virt --container").rc == 0
    if container:
        pytest.skip("containers share the host clock and cannot set it (see roles/common/tasks/timesync.yml)")
    assert host.service("chrony").is_running


def test_kernel_parameters_persisted(platform, any_node):
    host = platform.host(any_node)
    conf = host.file("/etc/sysctl.d/60-fms.conf")
    assert conf.exists, "roles/common writes the parameters it could set"
    assert conf.contains("net.core.somaxconn")


def test_java_runtime_on_jvm_hosts(platform, any_node):
    if not _groups_of(platform, any_node) & JVM_GROUPS:
        pytest.skip("no JVM service on this host")
    host = platform.host(any_node)
    assert host.package("openjdk-17-jre-headless").is_installed
    version = host.run("java -version 2>&1 | head -1").stdout
    assert '"17.' in version
