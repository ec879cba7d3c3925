"""The Kafka CLI tools as the kafka role's modules run them (kafka_admin, kafka_health)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# The options every module built on KafkaCli takes (documented in each module's DOCUMENTATION).
CONNECTION_ARGUMENT_SPEC = {
    "kafka_home": {"type": "path", "required": True},
    "bootstrap_server": {"type": "str", "required": True},
    "command_config": {"type": "path", "required": True},
    "java_home": {"type": "path"},
    "heap_size": {"type": "str", "default": "256m"},
    "jvm_opts": {"type": "str", "default": ""},
}


class KafkaCli:
    """One admin client configuration; each call is one JVM start of the named tool."""

    def __init__(self, module):
        self.module = module
        self.bin = os.path.join(module.params["kafka_home"], "bin")
        self.base = [
            "--bootstrap-server",
            module.params["bootstrap_server"],
            "--command-config",
            module.params["command_config"],
        ]
        heap = f"-Xmx{module.params['heap_size']}"
        env = {"KAFKA_HEAP_OPTS": heap, "KAFKA_LOG4J_OPTS": "", "KAFKA_OPTS": "", "JMX_PORT": ""}
        # Replaces Kafka's JIT/GC defaults (tuned for a long-running broker) for these
        # short-lived tools; empty keeps Kafka's own.
        if module.params.get("jvm_opts"):
            env["KAFKA_JVM_PERFORMANCE_OPTS"] = module.params["jvm_opts"]
        if module.params.get("java_home"):
            env["JAVA_HOME"] = module.params["java_home"]
        self.env = env

    def command(self, tool: str, args: list[str]) -> list[str]:
        return [os.path.join(self.bin, tool), *self.base, *args]

    def run_raw(self, tool: str, args: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(self.command(tool, args), environ_update=self.env)

    def run(self, tool: str, args: list[str], check: bool = True) -> str:
        rc, out, err = self.run_raw(tool, args)
        if check and rc != 0:
            self.fail(tool, args, rc, out, err)
        return out

    def fail(self, tool: str, args: list[str], rc: int, out: str, err: str) -> None:
        self.module.fail_json(
            msg=f"{tool} failed (rc={rc})",
            stdout=out,
            stderr=err,
            cmd=" ".join(a if "password=" not in a else "<redacted>" for a in self.command(tool, args)),
        )

    def run_all(self, calls: dict[str, tuple[str, list[str]]]) -> dict[str, tuple[int, str, str]]:
        """Run read-only tools side by side: each is a JVM start of seconds on a small host,
        and an idempotent run or a health gate does nothing but such reads."""
        with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
            futures = {key: pool.submit(self.run_raw, *call) for key, call in calls.items()}
            return {key: future.result() for key, future in futures.items()}

    def read_all(self, calls: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
        """run_all, failing (once, in this thread) on the first tool that failed."""
        results = self.run_all(calls)
        for key, (rc, out, err) in results.items():
            if rc != 0:
                self.fail(*calls[key], rc, out, err)
        return {key: out for key, (_, out, _) in results.items()}
