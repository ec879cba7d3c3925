"""Action plugin fms_vault_file: encrypt or decrypt a control-machine file with the run's vault password.

ansible-vault's own CLI cannot be called from a playbook with the operator's password (it is
in the ansible-playbook process, typed at --ask-vault-pass or read from --vault-password-file),
and the ``vault`` filter needs the password as a variable. This action uses the secrets the
run was started with, as ``ansible-vault encrypt``/``decrypt`` would. The secrets backup
playbooks (ansible/secrets_backup.yml, secrets_restore.yml) use it so nothing leaves the
control machine unencrypted.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, is_encrypted, match_encrypt_secret

from ansible.plugins.action import ActionBase

DOCUMENTATION = """
    name: fms_vault_file
    short_description: Encrypts or decrypts a file on the control machine with the run's vault password
    description:
      - Uses the vault secrets ansible-playbook was started with (--vault-password-file, --ask-vault-pass,
        --vault-id) and fails, naming those options, when there are none.
      - Always runs on the control machine, whatever the task's host; writes O(dest) with mode 0600.
    options:
      src: {description: File to read., type: path, required: true}
      dest: {description: File to write (replaced atomically)., type: path, required: true}
      state:
        description:
          - V(encrypted) writes the vault-encrypted O(src) (refuses a O(src) that is already encrypted);
          - V(decrypted) writes the plaintext of the vault-encrypted O(src) (refuses a O(src) that is not).
        type: str
        choices: [encrypted, decrypted]
        required: true
      vault_id:
        description: Vault id to encrypt with when the run has several; default the only one.
        type: str
"""

NO_PASSWORD = (
    "no vault password: run ansible-playbook with --vault-password-file FILE, --ask-vault-pass "
    "or --vault-id ID@SOURCE (the operator's vault password encrypts the secrets backups)"
)


def _write_private(dest: str, data: bytes) -> None:
    """Write `data` to `dest` with mode 0600 from the first byte on (a temp file, then rename)."""
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fms_vault_file.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("src", "dest", "state", "vault_id"))

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        missing = [k for k in ("src", "dest", "state") if not args.get(k)]
        if missing:
            return {**result, "failed": True, "msg": f"missing required arguments: {', '.join(missing)}"}
        state = args["state"]
        if state not in ("encrypted", "decrypted"):
            return {**result, "failed": True, "msg": f"state must be encrypted or decrypted (got {state})"}
        src, dest = os.path.expanduser(args["src"]), os.path.expanduser(args["dest"])
        # The secrets ansible-playbook's CLI handed to its loader: DataLoader keeps no public getter.
        secrets = list(self._loader._vault.secrets or [])
        if not secrets:
            return {**result, "failed": True, "msg": NO_PASSWORD}
        if self._task.check_mode:
            return {**result, "changed": True, "skipped": True, "msg": "check mode: nothing written"}
        try:
            with open(src, "rb") as handle:
                data = handle.read()
            if state == "encrypted":
                if is_encrypted(data):
                    raise AnsibleError(f"{src} is already vault-encrypted")
                vault_id, secret = match_encrypt_secret(secrets, args.get("vault_id"))
                output = VaultLib(secrets).encrypt(data, secret, vault_id=vault_id)
                if not is_encrypted(output):  # never hand plaintext on as ciphertext
                    raise AnsibleError("encryption produced no vault envelope")
            else:
                if not is_encrypted(data):
                    raise AnsibleError(f"{src} is not vault-encrypted: refusing to use it as a backup")
                output = VaultLib(secrets).decrypt(data)
            _write_private(dest, output)
        except (OSError, AnsibleError) as exc:
            return {**result, "failed": True, "msg": f"fms_vault_file {state}: {exc}"}
        return {**result, "changed": True, "dest": dest, "size": len(output)}
