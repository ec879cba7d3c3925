"""The emulator launcher's fidelity fixes (scripts/fms_tools/fmsops/moto_server.py), in process."""

from __future__ import annotations

import pytest

pytest.importorskip("moto")
import boto3
from botocore.exceptions import ClientError
from fms_tools.fmsops import moto_server  # importing applies the fixes
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


# --- SDK retries (scripts/fms_tools/fmsops/sdk_retry_replay.py) -------------------------------

CREATE_GROUP = (
    "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=fms-lab-bastion&GroupDescription=bastion"
)
EC2_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20261206/ap-northeast-2/ec2/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


@pytest.fixture
def emulator_app():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.test import Client

    with mock_aws():
        lines: list[str] = []
        app = moto_server.SdkRetryReplay(DomainDispatcherApplication(create_backend_app), log=lines.append)
        yield Client(app), app, lines


def _post(client, body: str, invocation: str, attempt: int):
    headers = {
        "Authorization": EC2_AUTH,
        "amz-sdk-invocation-id": invocation,
        "amz-sdk-request": f"attempt={attempt}; max=25",
    }
    return client.post("/", data=body, headers=headers, content_type="application/x-www-form-urlencoded")


def test_an_sdk_retry_of_a_create_it_carried_out_gets_the_first_answer(emulator_app) -> None:
    client, app, lines = emulator_app
    first = _post(client, CREATE_GROUP, "inv-1", attempt=1)
    retry = _post(client, CREATE_GROUP, "inv-1", attempt=2)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert (retry.status_code, retry.get_data()) == (200, first.get_data())
    assert app.replayed == 1 and "attempt 2 of invocation inv-1" in lines[0]
    groups = boto3.client("ec2", region_name="ap-northeast-2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["fms-lab-bastion"]}]
    )["SecurityGroups"]
    assert len(groups) == 1


def test_a_new_call_with_the_same_content_is_still_refused_as_aws_refuses_it(emulator_app) -> None:
    client, app, _ = emulator_app
    assert _post(client, CREATE_GROUP, "inv-1", attempt=1).status_code == 200
    again = _post(client, CREATE_GROUP, "inv-2", attempt=1)
    assert again.status_code == 400 and "InvalidGroup.Duplicate" in again.get_data(as_text=True)
    assert app.replayed == 0


def test_a_retry_waits_for_the_first_attempt_still_running() -> None:
    import threading

    from fms_tools.fmsops.sdk_retry_replay import SdkRetryReplay
    from werkzeug.test import Client

    release, calls = threading.Event(), []

    def slow_create(environ, start_response):
        calls.append(environ["HTTP_AMZ_SDK_REQUEST"])
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [b"<created/>"]

    app = SdkRetryReplay(slow_create, log=lambda _: None)
    answers: list[bytes] = []
    headers = {"amz-sdk-invocation-id": "inv-slow", "amz-sdk-request": "attempt=1; max=3"}
    first = threading.Thread(target=lambda: answers.append(Client(app).post("/", headers=headers).get_data()))
    first.start()
    while not calls:
        threading.Event().wait(0.01)
    retry = threading.Thread(
        target=lambda: answers.append(
            Client(app).post("/", headers={**headers, "amz-sdk-request": "attempt=2; max=3"}).get_data()
        )
    )
    retry.start()
    threading.Event().wait(0.2)
    release.set()
    first.join(10)
    retry.join(10)
    assert answers == [b"<created/>", b"<created/>"] and calls == ["attempt=1; max=3"]


def test_reads_and_calls_without_an_invocation_id_pass_straight_through() -> None:
    from fms_tools.fmsops.sdk_retry_replay import SdkRetryReplay
    from werkzeug.test import Client

    calls = []

    def app_(environ, start_response):
        calls.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [])
        return [b"ok"]

    client = Client(SdkRetryReplay(app_, log=lambda _: None))
    client.get("/", headers={"amz-sdk-invocation-id": "a", "amz-sdk-request": "attempt=2"})
    client.get("/", headers={"amz-sdk-invocation-id": "a", "amz-sdk-request": "attempt=2"})
    client.post("/")
    client.post("/")
    assert calls == ["GET", "GET", "POST", "POST"]
