"""The local lab: every running EC2 instance the AWS emulator reports becomes a
bootable systemd-nspawn host on a lab bridge (SPEC §9, issue 3).

One module per job: preflight (checks before anything changes), rootfs (the
cached Debian image), network (bridges, NAT), hosts (containers), state (the
lab directory), discovery (instances from the emulator), orchestrate (up,
down, status). cli is the command line, `fms-lab` (or `python -m fms_tools.lab`).
"""
