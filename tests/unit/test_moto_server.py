"""The emulator launcher's fidelity fixes (scripts/fms_tools/fmsops/moto_server.py), in process."""

from __future__ import annotations

import pytest

pytest.importorskip("moto")
import boto3
from botocore.exceptions import ClientError
from fms_tools.fmsops import moto_server  # noqa: F401 - importing applies the fixes
from moto import mock_aws


@pytest.fixture
def ec2():
    with mock_aws():
        client = boto3.client("ec2", region_name="ap-northeast-2")
        vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        yield client, vpc


def _group(client, vpc: str, name: str) -> str:
    return client.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]


def _rules(client, group: str) -> list[dict]:
    rules = client.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
    return [r for r in rules["SecurityGroupRules"] if not r["IsEgress"]]


def test_a_replayed_authorization_answers_with_the_rule_it_already_made(ec2) -> None:
    client, vpc = ec2
    hdfs, bastion = _group(client, vpc, "hdfs"), _group(client, vpc, "bastion")
    permission = {
        "IpProtocol": "tcp",
        "FromPort": 9870,
        "ToPort": 9870,
        "UserIdGroupPairs": [{"GroupId": bastion, "Description": "NameNode web UI from bastion"}],
    }
    client.authorize_security_group_ingress(GroupId=hdfs, IpPermissions=[permission])
    client.authorize_security_group_ingress(GroupId=hdfs, IpPermissions=[permission])  # the SDK's replay
    assert len(_rules(client, hdfs)) == 1


def test_a_rule_that_differs_is_still_refused_as_aws_refuses_it(ec2) -> None:
    client, vpc = ec2
    bastion = _group(client, vpc, "bastion")
    rule = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    office = {"CidrIp": "203.0.113.0/24"}
    client.authorize_security_group_ingress(
        GroupId=bastion, IpPermissions=[{**rule, "IpRanges": [{**office, "Description": "a"}]}]
    )
    with pytest.raises(ClientError, match=r"InvalidPermission\.Duplicate"):
        client.authorize_security_group_ingress(
            GroupId=bastion, IpPermissions=[{**rule, "IpRanges": [{**office, "Description": "b"}]}]
        )
    assert len(_rules(client, bastion)) == 1
