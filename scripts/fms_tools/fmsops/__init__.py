"""Operations helpers shared by the lab, the tests and the benchmarks.

emulator            the AWS emulator (moto_server) on loopback: start, stop, adopt leftovers
moto_server         the emulator's launcher with fidelity fixes (`fms-emulator`)
terraform           the Terraform CLI on a staged stack; terraform_cli is `fms-terraform`
platform_contract   platform.yml, read and checked (also loaded by the Ansible vars plugin)
procs               processes the tools start: identity and stopping
kafka_broker        a single-node Kafka on loopback (bench --mode loopback, integration tests)
"""
