#!/usr/bin/env python3
"""Tests of check_compose.py: it passes on the repository as it is, and fails, naming the
problem, on copies broken one way at a time.

    python3 tests/compose/test_check_compose.py
"""

import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECK = HERE / "check_compose.py"

# What the checker reads; copied into a scratch directory for each broken variant.
COPY = [
    "docker-compose.yml", "Dockerfile", ".dockerignore", "Cargo.toml", "Cargo.lock", "build.rs",
    "deploy", "docs/docker.md", "tests/compose", "tests/support", "src",
    "ingest/Cargo.toml", "ingest/src", "dataflow/Cargo.toml", "dataflow/src",
    "storage/Cargo.toml", "storage/src",
    "query-api/Cargo.toml", "query-api/src", "query-api/assets", "query-api/benches",
    "fixtures/Cargo.toml", "fixtures/src", "benches/Cargo.toml", "benches/src",
]


def run(root):
    return subprocess.run([sys.executable, str(CHECK), "--root", str(root), "--no-docker"],
                          capture_output=True, text=True, timeout=120)


class Broken(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def copy(self):
        dest = Path(tempfile.mkdtemp(dir=self.tmp.name))
        for rel in COPY:
            src = ROOT / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return dest

    def edit(self, root, rel, old, new, count=1):
        p = root / rel
        text = p.read_text(encoding="utf-8")
        self.assertTrue(old in text, f"{rel} no longer holds {old!r}: update this test")
        p.write_text(text.replace(old, new, count), encoding="utf-8")

    def assertFails(self, root, *needles):
        r = run(root)
        self.assertEqual(r.returncode, 1, f"expected a failure\n{r.stdout}\n{r.stderr}")
        for n in needles:
            self.assertRegex(r.stderr, n)

    def test_the_repository_passes(self):
        r = run(self.copy())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("checks hold", r.stdout)

    def test_a_variable_emoflow_does_not_read(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", '  EMOFLOW_TOPIC: "', '  EMOFLOW_TOPICS: "x"\n  EMOFLOW_TOPIC: "')
        self.assertFails(root, r"sets EMOFLOW_TOPICS, which emoflow does not read")

    def test_a_serve_flag_left_out(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", '  EMOFLOW_TICK: "${EMOFLOW_TICK:-20ms}"\n', "")
        self.assertFails(root, r"emoflow runs `emoflow serve` but does not list EMOFLOW_TICK",
                         r"x-emoflow-env lacks EMOFLOW_TICK")

    def test_a_new_flag_in_cli_rs(self):
        root = self.copy()
        self.edit(root, "src/cli/args.rs", "pub struct HttpArgs {",
                  'pub struct HttpArgs {\n    /// New.\n    #[arg(long, env = "EMOFLOW_SHINY_NEW")]\n    pub shiny_new: Option<String>,')
        self.assertFails(root, r"does not list EMOFLOW_SHINY_NEW \(--shiny-new\)", r"docker\.md does not mention EMOFLOW_SHINY_NEW")

    def test_a_default_that_drifted(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "${EMOFLOW_WINDOW:-10s}", "${EMOFLOW_WINDOW:-5s}")
        self.assertFails(root, r"EMOFLOW_WINDOW is '5s' but its default in src/cli/args.rs is '10s'")

    def test_an_interpolation_of_another_variable(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "${EMOFLOW_TOP_K:-3}", "${EMOFLOW_TOPK:-3}")
        self.assertFails(root, r"EMOFLOW_TOP_K interpolates \$\{EMOFLOW_TOPK\}")

    def test_a_missing_dependency(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "    kafka:\n      condition: service_healthy",
                  "    zookeeper:\n      condition: service_healthy")
        self.assertFails(root, r"depends on zookeeper, which is not a service")

    def test_a_service_without_healthcheck(self):
        root = self.copy()
        text = (root / "docker-compose.yml").read_text(encoding="utf-8")
        text = re.sub(r"    healthcheck:\n      test: \[\"CMD-SHELL\".*?start_period: 30s\n", "", text, flags=re.S)
        (root / "docker-compose.yml").write_text(text, encoding="utf-8")
        self.assertFails(root, r"kafka has no healthcheck")

    def test_an_undeclared_volume(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "- emoflow-data:/data", "- emoflow-state:/data")
        self.assertFails(root, r"mounts volume emoflow-state, which is not declared",
                         r"volume emoflow-data is declared but no service mounts it")

    def test_two_processes_on_one_data_volume(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "- emoflow-p1-data:/data", "- emoflow-p0-data:/data")
        self.assertFails(root, r"share the data volume emoflow-p0-data")

    def test_a_hostfile_in_the_wrong_order(self):
        root = self.copy()
        (root / "deploy/cluster-hostfile").write_text("emoflow-p1:2101\nemoflow-p0:2101\n")
        self.assertFails(root, r"process 0 is emoflow-p1, but the service with EMOFLOW_PROCESS=0 is emoflow-p0")

    def test_a_hostfile_with_a_missing_process(self):
        root = self.copy()
        (root / "deploy/cluster-hostfile").write_text("emoflow-p0:2101\n")
        self.assertFails(root, r"1 addresses for EMOFLOW_PROCESSES=2")

    def test_no_hostfile(self):
        root = self.copy()
        (root / "deploy/cluster-hostfile").unlink()
        self.assertFails(root, r"mounts ./deploy/cluster-hostfile, which does not exist")

    def test_cluster_members_that_disagree(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", '      EMOFLOW_PROCESS: "1"\n',
                  '      EMOFLOW_PROCESS: "1"\n      EMOFLOW_WORKERS: "3"\n')
        self.assertFails(root, r"the cluster members differ in EMOFLOW_WORKERS")

    def test_a_schema_violation(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "    restart: unless-stopped\n    environment:",
                  "    restart: unless-stopped\n    restartt: always\n    environment:")
        self.assertFails(root, r"services/kafka: (Additional|Unevaluated) properties are not allowed \('restartt' was unexpected\)")

    def test_a_depends_on_condition_compose_does_not_know(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "condition: service_healthy", "condition: service_healty")
        self.assertFails(root, r"services/emoflow/depends_on/kafka/condition: 'service_healty' is not one of")

    def test_a_duplicate_key(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", '      KAFKA_NODE_ID: "1"\n', '      KAFKA_NODE_ID: "1"\n      KAFKA_NODE_ID: "2"\n')
        r = run(root)
        self.assertEqual(r.returncode, 1)
        self.assertIn("duplicate key 'KAFKA_NODE_ID'", r.stderr)

    def test_an_obsolete_version(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", "name: emoflow\n", 'version: "3.9"\nname: emoflow\n')
        self.assertFails(root, r"`version:` is obsolete")

    def test_a_colliding_host_port(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", '"8181:8080"', '"8180:8080"')
        self.assertFails(root, r"host port 8180 is published by both emoflow-p0 and emoflow-p1")

    def test_a_dockerignore_that_hides_a_build_input(self):
        root = self.copy()
        with open(root / ".dockerignore", "a", encoding="utf-8") as f:
            f.write("tests/\n")
        self.assertFails(root, r"\.dockerignore leaves out tests/support/find_tansu\.rs, which the build reads")

    def test_a_dockerignore_that_hides_the_benchmark_crate(self):
        root = self.copy()
        self.edit(root, ".dockerignore", "benches/peers/\n", "benches/\n")
        self.assertFails(root, r"\.dockerignore leaves out benches/src/lib\.rs, which the build reads")

    def test_a_workspace_member_without_a_manifest(self):
        root = self.copy()
        (root / "benches/Cargo.toml").unlink()
        self.assertFails(root, r"workspace member benches has no Cargo\.toml")

    def test_a_dockerignore_that_keeps_target(self):
        root = self.copy()
        self.edit(root, ".dockerignore", "target/\n**/target/\n", "")
        self.assertFails(root, r"target/ is not left out of the build context")

    def test_a_root_image(self):
        root = self.copy()
        self.edit(root, "Dockerfile", "USER 10001:10001\n", "USER root\n")
        self.assertFails(root, r"must end on a non-root USER")

    def test_a_rust_image_older_than_the_workspace(self):
        root = self.copy()
        self.edit(root, "Dockerfile", "ARG RUST_VERSION=1.89", "ARG RUST_VERSION=1.80")
        self.assertFails(root, r"rust:1\.80-bookworm is older than the workspace's rust-version")

    def test_a_listen_port_the_healthcheck_does_not_use(self):
        root = self.copy()
        self.edit(root, "docker-compose.yml", 'EMOFLOW_LISTEN: "0.0.0.0:8080"', 'EMOFLOW_LISTEN: "0.0.0.0:9000"')
        self.assertFails(root, r"publishes container port 8080 but listens on 9000",
                         r"healthcheck does not ask /health on port 9000")


if __name__ == "__main__":
    unittest.main(verbosity=1)
